"""A live step keeps saved tensors without their statistics: why() of a NaN gradient reads the
kept tensors to find where the forward made the NaN, as a runnable debugger does."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs

pytestmark = pytest.mark.usefixtures("every_step")


class _LogNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.log(self.l1(x)))  # l1's negative outputs: log makes NaN in the forward


def test_live_why_of_a_forward_nan_names_the_op_that_made_it() -> None:
    torch.manual_seed(0)
    model, x = _LogNet(), torch.randn(3, 4)
    dbg = gs.debugger(model)
    try:
        model(x).sum().backward()
        shown = dbg.graph
        why = dbg.why("l2.weight")
        assert why.where is not None and why.where.startswith("LogBackward0"), why
        assert "forward made them" in why.message and "click it" not in why.message, why.message
        assert dbg.graph is shown  # statistics for this answer only: the graph shown is not changed
        mat1 = dbg.graph.node(next(n.id for n in dbg.graph.nodes if n.module == "l2" and n.name.startswith("Addmm")))
        assert mat1.saved["_saved_mat1"].nan_count is None  # type: ignore[union-attr]
    finally:
        dbg.close()
    runnable = gs.debugger(model, inputs=x, loss=lambda out: out.sum())
    try:
        assert runnable.why("l2.weight").where == why.where  # the runnable debugger's answer
    finally:
        runnable.close()
