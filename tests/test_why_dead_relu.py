"""why() of the layer after a dead ReLU: its weight's zero gradient is the product of the gradient
and the ReLU's all-zero output, so the ReLU (and its module) is named as the cause, not the layer's
matmul."""

from __future__ import annotations

import torch
from torch import nn

import gradsight as gs


def test_the_layer_after_a_dead_relu_is_blamed_on_the_relu() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        model[0].bias.fill_(-5.0)  # every pre-activation negative
    x, y = torch.randn(16, 8), torch.randn(16, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.mse_loss(out, y))
    why = dbg.why("2.weight")
    assert why.reason == "zero" and why.where == "1/ReluBackward0#0"
    assert "because ReluBackward0 (in 1) output only zeros: a dead ReLU" in why.message
    assert "AddmmBackward0 (in 2) multiplies the gradient by that input" in why.message
    assert {w.name: w.where for w in dbg.graph.missing}["2.weight"] == "1/ReluBackward0#0"
    assert dbg.why("0.weight").where == "1/ReluBackward0#0"  # the layer before: the ReLU passed it nothing
    assert dbg.graph.node("leaf:2.bias").grad_norm  # the bias does not multiply the ReLU's output
    dbg.close()


def test_a_dead_relu_is_found_through_a_flatten() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Flatten(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].bias.fill_(-50.0)
    dbg = gs.debugger(model, inputs=torch.randn(3, 2, 4), loss=lambda out: out.pow(2).sum() + out.sum())
    why = dbg.why("3.weight")
    assert why.reason == "zero" and why.where is not None
    assert dbg.graph.node(why.where).name == "ReluBackward0" and "(in 1) output only zeros" in why.message
    dbg.close()


def test_a_zero_mask_is_still_blamed_on_the_multiplication() -> None:
    w = torch.randn(3, requires_grad=True)
    mask = torch.zeros(3)
    dbg = gs.debugger(lambda: (torch.relu(w + 10) * mask).sum())  # the ReLU is alive: the mask zeroes it
    why = dbg.why("w")
    assert why.reason == "zero" and why.where is not None and dbg.graph.node(why.where).name == "MulBackward0"
    dbg.close()


def test_a_dead_relu_is_found_behind_a_pool_and_a_training_dropout() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 3, 16, 16)
    for pool in (nn.MaxPool2d(2), nn.AvgPool2d(2)):
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), pool, nn.Conv2d(8, 4, 3), nn.Flatten(),
                               nn.Linear(4 * 6 * 6, 1))  # fmt: skip
        with torch.no_grad():
            model[0].bias.fill_(-100.0)
        dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).mean())
        why = dbg.why("3.weight")
        assert why.reason == "zero" and "ReluBackward0 (in 1) output only zeros" in why.message, why
        dbg.close()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1)).train()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)
    dbg = gs.debugger(model, inputs=torch.randn(16, 4), loss=lambda out: out.pow(2).mean())
    assert "ReluBackward0 (in 1) output only zeros" in dbg.why("3.weight").message
    dbg.close()


def test_a_relu6_or_hardtanh_past_a_bound_is_said_saturated_not_dead() -> None:
    torch.manual_seed(0)
    for act, bias, side in ((nn.ReLU6(), 100.0, "upper bound: every input it saw was ≥ 6"),
                            (nn.Hardtanh(), -100.0, "lower bound: every input it saw was ≤ -1")):  # fmt: skip
        model = nn.Sequential(nn.Linear(8, 16), act, nn.Linear(16, 1))
        with torch.no_grad():
            model[0].bias.fill_(bias)
        dbg = gs.debugger(model, inputs=torch.randn(32, 8), loss=lambda out: out.pow(2).mean())
        why = dbg.why("0.weight")
        assert why.reason == "zero" and f"saturated at its {side}" in why.message, why
        assert "dead ReLU" not in why.message
        dbg.close()
