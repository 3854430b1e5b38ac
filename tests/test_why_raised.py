"""why() never raises the user's error: after a forward that failed, the answer names the error
(the trace that would explain the leaf re-runs the failing code); the reasons the wire knows for a
backward that raised, an exploding and a vanishing gradient are theirs, not "unknown"."""

from __future__ import annotations

import torch
from torch import nn

import gradsight as gs


def test_why_after_a_forward_that_raised_answers_with_its_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(7, 1))  # 8 -> 7: the forward raises
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda o: o.sum())
    assert dbg.status == "error"
    why = dbg.why("0.weight")  # raised RuntimeError before
    assert "mat1 and mat2 shapes cannot be multiplied (2x8 and 7x1)" in why.message
    assert why.reason == "unknown"
    dbg.close()


def test_why_after_an_inplace_edit_of_a_leaf_in_the_forward_does_not_raise() -> None:
    w = torch.randn(3, requires_grad=True)

    def step() -> torch.Tensor:
        w.add_(1)  # a leaf that requires grad: torch raises in the forward
        return (w * 2).sum()

    dbg = gs.debugger(step)
    why = dbg.why("w")
    assert "a leaf Variable that requires grad is being used in an in-place operation" in why.message
    dbg.close()


def test_a_run_that_raised_before_any_graph_is_answered_from_its_error_without_a_rerun() -> None:
    from gradsight._capture.explain import explain
    from gradsight._capture.targets import TensorTarget
    from gradsight.graph import Graph
    from gradsight.toggles import Toggles

    class NoRerun(TensorTarget):
        def trace(self, name: str, toggles: Toggles) -> None:
            raise AssertionError("re-ran the failing step")

    failure = 'Traceback (most recent call last):\n  File "x.py", line 3\nValueError: bad batch. Check it.'
    why = explain(NoRerun({"w": torch.zeros(2, requires_grad=True)}), Graph(), Toggles(), "w", failure)
    assert "ValueError: bad batch" in why.message and "Check it" not in why.message
