"""A warning raised in a backward the spy does not watch — another thread's, running while a
%%gradsight cell runs — names what it names in a plain cell, not spy.py: that call passes through the
spy's wrapper of ``torch.autograd.backward``/``grad`` (unwatched, but a frame on its stack), and a stack
level reaching that frame names the frame it would name without it (``spy_warnings.Rehomed``, on for as
long as the spy is installed).

The oracle, as in ``test_cell_warning_location``: the same body run as a plain cell (a comment for its
first line, numbering its lines as the magic's cell numbers them) and as a %%gradsight cell."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from tests.cells import cell

# a custom Function's backward, run on another thread, warns at each stack level in turn; the cell's
# own backward runs after (watched)
THREADED = """\
import threading, warnings
class Warns(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2
    @staticmethod
    def backward(ctx, g):
        warnings.warn(f"level {level}", stacklevel=level)
        return g * 2
def work():
    a = torch.ones(3, requires_grad=True)
    {call}
for level in range(1, 7):
    th = threading.Thread(target=work); th.start(); th.join()
w = torch.ones(3, requires_grad=True)
(w * 2).sum().backward()
"""
CALLS = [
    "Warns.apply(a).sum().backward()",
    "torch.autograd.backward(Warns.apply(a).sum())",
    "torch.autograd.grad(Warns.apply(a).sum(), a)",
]


def _where(caught: list[warnings.WarningMessage]) -> list[tuple[str, str, int]]:
    """(message, file, line) of each "level" warning; a cell's input is "<cell>"."""
    return [(str(w.message), "<cell>" if w.filename.startswith("<ipython-input-") else w.filename, w.lineno)
            for w in caught if str(w.message).startswith("level ")]  # fmt: skip


def _run_both(shell: InteractiveShell, body: str) -> tuple[list[Any], list[Any]]:
    located = []
    for run in (lambda: shell.run_cell("# plain\n" + body, store_history=True), lambda: cell(shell, body)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        located.append(_where(caught))
    return located[0], located[1]


@pytest.mark.parametrize("call", CALLS)
def test_another_threads_backward_warning_names_what_a_plain_cell_names(shell: InteractiveShell, call: str) -> None:
    plain, magic = _run_both(shell, THREADED.replace("{call}", call))
    assert len(plain) == len(magic) == 6, (plain, magic)
    assert not [where for where in magic if "gradsight" in where[1]], magic  # never spy.py
    # up to the level one past torch.autograd.backward/grad: the one the spy's wrapper stands at (beyond
    # it, the wrapper still counts: those name a frame further down, as in a watched call)
    wrapped = next(i for i, (_, file, _) in enumerate(plain) if file.endswith("torch/autograd/__init__.py")) + 2
    assert magic[:wrapped] == plain[:wrapped], (plain, magic)
    assert not [f for f in warnings.filters if "spy" in str(getattr(f[3], "pattern", f[3]))]  # ours went
    assert warnings.showwarning is warnings._showwarning_orig  # type: ignore[attr-defined]
