"""A ``%%gradsight`` cell's re-run reaches the globals of the helper functions it calls also where
only their nested code reads them (a lambda, a generator expression): ``namespace_guard.with_helpers``
puts those objects back too."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

HELPERS = {
    "lambda": "def log(v):\n    add = lambda: history.append(float(v.detach()))\n    add()",
    "genexpr": "def log(v):\n    list(history.append(float(v.detach())) for _ in range(1))",
}


@pytest.mark.parametrize("nested", sorted(HELPERS))
def test_a_rerun_puts_back_a_global_a_helper_reads_only_in_nested_code(shell: InteractiveShell, nested: str) -> None:
    shell.run_cell(f"w = torch.ones(3, requires_grad=True)\nhistory = []\n{HELPERS[nested]}", store_history=False)
    dbg = shell.run_cell("%%gradsight\nloss = (w * 2).sum()\nloss.backward()\nlog(loss)", store_history=False).result
    history = shell.user_ns["history"]
    assert history == [6.0]  # the cell's own run logged once
    dbg.rerun()
    dbg.rerun()
    assert shell.user_ns["history"] is history
    assert history == [6.0]  # the re-runs' appends were undone
