"""A runnable run whose loss is NaN or Inf keeps the value and says so in a note."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight.schema import graph_to_wire


def test_a_nan_loss_is_kept_and_noted() -> None:
    model = nn.Linear(4, 1)
    x = torch.randn(6, 4)
    x[2, 1] = float("nan")  # one NaN in the batch
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).mean())
    assert dbg.status == "ready", dbg.error
    loss = dbg.graph.run.loss
    assert loss is not None and math.isnan(loss)
    notes = [n for n in dbg.graph.notes if n.startswith("The loss is NaN")]
    assert len(notes) == 1 and "before any backward ran" in notes[0]
    wire = graph_to_wire(dbg.graph)  # the view gets it: "nan" (JSON has no NaN)
    assert wire["run"]["loss"] == "nan" and notes[0] in wire["notes"]
    json.dumps(wire, allow_nan=False)


@pytest.mark.parametrize(("scale", "shown"), [(1e30, "Inf"), (-1e30, "-Inf")])
def test_an_infinite_loss_is_kept_and_noted(scale: float, shown: str) -> None:
    w = torch.ones(3, requires_grad=True)

    def step() -> torch.Tensor:
        return (w * scale).sum() * abs(scale)  # overflows float32

    dbg = gs.debugger(step)
    loss = dbg.graph.run.loss
    assert loss is not None and math.isinf(loss) and (loss > 0) == (scale > 0)
    assert any(n.startswith(f"The loss is {shown}:") for n in dbg.graph.notes), dbg.graph.notes


def test_a_finite_loss_has_no_such_note() -> None:
    dbg = gs.debugger(nn.Linear(4, 1), inputs=torch.randn(6, 4), loss=lambda out: out.pow(2).mean())
    loss = dbg.graph.run.loss
    assert loss is not None and math.isfinite(loss)
    assert not any(n.startswith("The loss is") for n in dbg.graph.notes)


def test_a_re_run_notes_it_again() -> None:
    model = nn.Linear(4, 1)
    x = torch.randn(6, 4)
    x[0, 0] = float("inf")
    dbg = gs.debugger(model, inputs=x, loss=lambda out: (out - out).sum())  # inf - inf: NaN
    assert any(n.startswith("The loss is NaN") for n in dbg.graph.notes)
    again = dbg.rerun(requires_grad={"bias": False})
    assert again.run.loss is not None and math.isnan(again.run.loss)
    assert any(n.startswith("The loss is NaN") for n in again.notes)


def test_a_constant_inf_term_leaves_the_gradients_finite_and_the_note_does_not_say_otherwise() -> None:
    from gradsight._capture.roots import nonfinite_note

    p = nn.Linear(2, 1)
    x = torch.randn(4, 2)
    penalty = torch.tensor(float("inf"))  # a data term: no gradient flows through it
    dbg = gs.debugger(lambda: p(x).pow(2).mean() + penalty)
    assert dbg.graph.run.loss == math.inf
    assert not any(n.nonfinite_gradient for n in dbg.graph.nodes)  # torch's gradients are finite here
    (note,) = [n for n in dbg.graph.notes if n.startswith("The loss is Inf")]
    assert "are NaN or Inf too:" not in note  # not claimed of every gradient
    assert "Every recorded gradient is finite" in note  # the run words it from its own gradients
    told = nonfinite_note(math.inf, dbg.graph)  # from the recorded gradients
    assert told is not None and "Every recorded gradient is finite" in told
    dbg.close()

    x[0, 0] = float("nan")  # now the NaN flows back into the weight's gradient
    dbg = gs.debugger(lambda: p(x).pow(2).mean())
    assert any(n.nonfinite_gradient for n in dbg.graph.nodes)
    told = nonfinite_note(math.nan, dbg.graph)
    assert told is not None and "are NaN or Inf too:" in told
    dbg.close()


def test_a_finite_float64_loss_past_float32s_range_is_kept() -> None:
    m = nn.Linear(2, 1).double()
    x = torch.full((4, 2), 1e100, dtype=torch.float64)
    expected = m(x).pow(2).mean().item()
    dbg = gs.debugger(m, inputs=x, loss=lambda out: out.pow(2).mean())
    assert dbg.graph.run.loss == expected and math.isfinite(expected) and expected > 1e190
    assert not any(n.startswith("The loss is") for n in dbg.graph.notes), dbg.graph.notes
    dbg.close()
