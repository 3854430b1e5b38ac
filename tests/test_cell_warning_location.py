"""A warning raised inside the user's backward in a %%gradsight cell names what it names in a plain
cell — the spy's wrapper and the cell's torch-function mode are not counted into its stack level —
and the user's filters and "once"/"default" registries decide about it as in a plain cell.

The oracle: the same body run as a plain cell and as a %%gradsight cell (the plain one with a comment
for its first line — IPython drops leading blank lines — so that its lines are numbered as the
magic's cell numbers them)."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.cells import cell

# a tensor hook in the cell warns at each stack level in turn, from one backward call per level
LEVELS = """\
import warnings
w = torch.ones(3, requires_grad=True)
w.register_hook(lambda g: warnings.warn(f"level {level}", stacklevel=level))
for level in range(1, 7):
    loss = (w * 2).sum()
    {call}
"""
CALLS = ["loss.backward()", "torch.autograd.backward(loss)", "torch.autograd.grad(loss, w)"]

# torch's own: BackwardHook warns with stacklevel=5, meant for the line calling loss.backward()
FULL_HOOK = """\
import warnings
m = nn.Linear(4, 3)
m.register_full_backward_hook(lambda *a: None)
x = torch.rand(2, 4)
loss = m(x).sum()
loss.backward()
"""


def _where(caught: list[warnings.WarningMessage], text: str) -> list[tuple[str, str, int]]:
    """(message, file, line) of each warning whose message holds ``text``; a cell's input is "<cell>"."""
    return [(str(w.message), "<cell>" if w.filename.startswith("<ipython-input-") else w.filename, w.lineno)
            for w in caught if text in str(w.message)]  # fmt: skip


def _run_both(shell: InteractiveShell, body: str, text: str) -> tuple[list[Any], list[Any]]:
    """Where the warnings holding ``text`` point from a plain cell, then from a %%gradsight cell."""
    located = []
    for run in (lambda: shell.run_cell("# plain\n" + body, store_history=True), lambda: cell(shell, body)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        located.append(_where(caught, text))
    return located[0], located[1]


def test_torchs_full_backward_hook_warning_names_the_cells_line(shell: InteractiveShell) -> None:
    plain, magic = _run_both(shell, FULL_HOOK, "Full backward hook is firing")
    assert [where[1:] for where in plain] == [("<cell>", 7)]  # loss.backward(), line 7 under %%gradsight
    assert magic == plain


@pytest.mark.parametrize("call", CALLS)
def test_every_stack_level_up_to_the_cells_line_names_what_a_plain_cell_names(
    shell: InteractiveShell, call: str
) -> None:
    plain, magic = _run_both(shell, LEVELS.replace("{call}", call), "level ")
    # the levels up to the one naming the cell's line (beyond it: IPython's own frames, not the same ones)
    upto = next(i for i, (_, file, _) in enumerate(plain) if file == "<cell>" and i > 0) + 1
    assert upto >= 4 and plain[upto - 1][1:] == ("<cell>", 7)  # torch's frames, then the backward call's line
    assert magic[:upto] == plain[:upto]
    assert not [where for where in magic if "gradsight" in where[1]]


# the user's filters, set in the cell around its backward calls; each oracle runs three backward
# calls on one line, recording what is shown
FILTERED = """\
import warnings
m = nn.Linear(4, 3)
m.register_full_backward_hook(lambda *a: None)
with warnings.catch_warnings(record=True) as caught:
    {filter}
    for _ in range(3):
        m(torch.rand(2, 4)).sum().backward()
shown = [(str(c.message)[:28], c.filename.startswith("<ipython-input-"), c.lineno) for c in caught]
"""
FILTERS = [
    'warnings.filterwarnings("default", module="__main__")',  # once per line, by the cell's registry
    'warnings.filterwarnings("once", message="Full backward hook")',
    'warnings.filterwarnings("ignore", module="__main__")',
    'warnings.filterwarnings("always", module="__main__"); warnings.filterwarnings("ignore", module="gradsight")',
]


@pytest.mark.parametrize("spec", FILTERS)
def test_the_cells_filters_and_registries_decide_as_in_a_plain_cell(shell: InteractiveShell, spec: str) -> None:
    body = FILTERED.replace("{filter}", spec)
    shell.run_cell("# plain\n" + body, store_history=True)
    plain = shell.user_ns["shown"]
    cell(shell, body)
    assert shell.user_ns["shown"] == plain
    if "ignore" not in spec.split(";")[0]:
        assert plain and all(inside and line == 8 for _, inside, line in plain)  # the backward call's line
    assert not [f for f in warnings.filters if "spy" in str(getattr(f[3], "pattern", f[3]))]  # ours went
    assert warnings.showwarning is warnings._showwarning_orig  # type: ignore[attr-defined]


def test_an_error_filter_raises_inside_the_backward_as_in_a_plain_cell(shell: InteractiveShell) -> None:
    body = (
        "import warnings\nm = nn.Linear(4, 3)\nm.register_full_backward_hook(lambda *a: None)\n"
        "with warnings.catch_warnings():\n"
        "    warnings.filterwarnings('error', message='Full backward hook', module='__main__')\n"
        "    try:\n        m(torch.rand(2, 4)).sum().backward()\n        raised = None\n"
        "    except UserWarning as e:\n        raised = str(e)\n"
    )
    shell.run_cell(body, store_history=True)
    assert re.match("Full backward hook is firing", shell.user_ns["raised"])
    del shell.user_ns["raised"]
    cell(shell, body)
    assert re.match("Full backward hook is firing", shell.user_ns["raised"])
