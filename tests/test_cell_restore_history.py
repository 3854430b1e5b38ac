"""A ``%%gradsight`` cell whose in-place edit autograd records in a tensor of the user's (``h.mul_(2)``
on a tensor out of an earlier cell's graph): a re-run would grow that tensor's history, so it is refused
(``cell_moved.Moved.rebased``), and the user's tensor keeps the history a plain cell gives it."""

from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


@pytest.mark.parametrize(
    ("setup", "cell"),
    [
        ("a = torch.ones(3, requires_grad=True)\nh = a * 1.0", "%%gradsight\nh.mul_(2)\nloss = h.sum()"),
        ("a = torch.ones(3, requires_grad=True)\nh = torch.zeros(3)", "%%gradsight\nh += a\nloss = h.sum()"),
    ],
)
def test_a_cell_that_grows_a_tensors_history_is_not_rerun(shell: InteractiveShell, setup: str, cell: str) -> None:
    shell.run_cell(setup, store_history=False)
    dbg = shell.run_cell(cell, store_history=False).result
    h, a = shell.user_ns["h"], shell.user_ns["a"]
    grad_fn, values, version = h.grad_fn, h.detach().clone(), h._version
    for _ in range(2):
        with pytest.raises(gs.RerunError, match=r"edits h in place.*cannot be re-run"):
            dbg.rerun()
    assert h.grad_fn is grad_fn and torch.equal(h, values) and h._version == version
    h.sum().backward()
    want = 2.0 if "mul_" in cell else 1.0
    assert a.grad is not None and a.grad.tolist() == [want] * 3  # as after a plain cell: no second edit counted


def test_edits_autograd_does_not_record_still_rerun(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nrow = model.weight[0]\nx = torch.randn(8, 4)\n"
        "a = torch.ones(3, requires_grad=True)\nh = a * 1.0\nopt = torch.optim.SGD(model.parameters(), lr=0.1)",
        store_history=False,
    )
    dbg = shell.run_cell(
        "%%gradsight\nh.data.mul_(2)\nn = row.numel() + h.numel()\nloss = model(x).pow(2).sum()\nloss.backward()\n"
        "opt.step()",
        store_history=False,
    ).result
    graph = dbg.rerun()  # a view of a stepped parameter gets a grad_fn anew; .data edits are not recorded
    assert graph.nodes
