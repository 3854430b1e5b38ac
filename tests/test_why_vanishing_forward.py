"""A gradient that is tiny because the forward's values vanished (twenty bias-free layers of small
weights: the loss is ~1e-35) is a genuine, vanishing gradient — float32 agrees with float64 — and
why() says so, not that the node where it shrinks most leaves only rounding noise (that is for a
node after which the loss is constant in its input: tests/test_why_extreme_design.py)."""

from __future__ import annotations

import copy

import torch
from torch import nn

import gradsight as gs


class _Deep(nn.Module):
    def __init__(self, std: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(8, 8, bias=False) for _ in range(20))
        for layer in self.layers:
            nn.init.normal_(layer.weight, std=std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x.pow(2).mean()


def test_a_gradient_that_vanished_with_the_forwards_values_is_not_called_rounding_noise() -> None:
    torch.manual_seed(0)
    model, x = _Deep(0.05), torch.randn(2, 8)
    m32, m64 = copy.deepcopy(model), copy.deepcopy(model).double()
    m32(x).backward()
    m64(x.double()).backward()
    g32, g64 = m32.layers[0].weight.grad, m64.layers[0].weight.grad
    assert g32 is not None and g64 is not None
    assert float((g32.double() - g64).norm() / g64.norm()) < 1e-4  # no rounding noise: float64 agrees

    dbg = gs.debugger(model, inputs=x)
    why = dbg.why("layers.0.weight")
    assert why.reason == "vanishing", why
    assert "rounding noise" not in why.message and "Not a vanishing gradient" not in why.message
    assert "PowBackward0" in why.message and "values vanished" in why.message and "the loss is 2.01e-35" in why.message
    dbg.close()
