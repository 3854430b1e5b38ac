"""why() of a zero gradient behind a zero-initialized weight names the weight; a healthy leaf's
gradient norm is given to 4 significant digits."""

from __future__ import annotations

import re

import torch
from torch import nn

import gradsight as gs


def test_a_zero_initialized_layer_is_named_for_the_layers_before_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():
        model[2].weight.zero_()
    x, y = torch.randn(16, 32), torch.randn(16, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.mse_loss(out, y))
    for name in ("0.weight", "0.bias"):
        why = dbg.why(name)
        assert why.reason == "zero" and why.where == "2/AddmmBackward0#0", why
        assert "because 2.weight is all zeros" in why.message
    assert "2.weight is all zeros" in {w.name: w.message for w in dbg.graph.missing}["0.bias"]
    dbg.close()


def test_a_healthy_gradient_norm_is_formatted() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    dbg = gs.debugger(model, inputs=torch.randn(8, 4), loss=lambda out: out.pow(2).mean())
    why = dbg.why("weight")
    (norm,) = re.findall(r"norm ([^)]*)\)", why.message)
    assert norm == f"{dbg.graph.node('leaf:weight').grad_norm:.4g}"
    dbg.close()


def test_a_live_debugger_before_its_first_step_says_to_run_one() -> None:
    dbg = gs.debugger(nn.Linear(4, 1))
    why = dbg.why("weight")
    assert "has not seen a training step" in why.message and "click" not in why.message
    dbg.close()
