"""why() of a finite gradient too big or too small to train with: exploding and vanishing gradients
are named, with where along the path from the loss the gradient grows or shrinks most and what to
do; ordinary models (the zoos) are never flagged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight._capture import why_extreme
from tests.run_zoo import CASES, make
from tests.zoo import ZOO


def test_a_stack_of_sigmoids_has_a_vanishing_gradient_named_at_the_sigmoids() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 1))
    x, y = torch.randn(32, 16), torch.randn(32, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.mse_loss(out, y))
    leaf = dbg.graph.node("leaf:0.weight")
    assert leaf.grad_norm is not None and 0 < leaf.grad_norm < 1e-8  # finite, not zero: no flag of its own
    why = dbg.why("0.weight")
    assert why.reason == "vanishing"
    assert "0.weight's gradient is vanishing" in why.message and "got a gradient in this run" not in why.message
    assert "It shrinks most through SigmoidBackward0: the 12 on the path" in why.message
    assert "ReLU" in why.message and "saturate" in why.message
    assert why.where is not None and dbg.graph.node(why.where).name == "SigmoidBackward0"
    last = dbg.why("24.weight")  # the last layer's gradient is fine
    assert "vanishing" not in last.message and "exploding" not in last.message
    dbg.close()


class RNN(nn.Module):
    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.inp = nn.Linear(3, d)
        self.rec = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            self.rec.weight.copy_(1.2 * torch.eye(d))  # largest singular value 1.2: ×1.2 per step back
            self.inp.bias.zero_()
        self.out = nn.Linear(d, 1)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(xs.shape[1], self.rec.weight.shape[0])
        for t in range(xs.shape[0]):
            h = torch.tanh(self.rec(h) + self.inp(xs[t]))
        return self.out(h)


def test_a_recurrent_weight_above_one_has_an_exploding_gradient_named_at_its_matmuls() -> None:
    torch.manual_seed(0)
    model, xs = RNN(), 1e-7 * torch.randn(50, 4, 3)
    dbg = gs.debugger(model, inputs=xs, loss=lambda out: out.pow(2).mean())
    why = dbg.why("inp.bias")
    assert why.reason == "exploding"
    assert "inp.bias's gradient is exploding" in why.message
    assert "It grows most through MmBackward0: the 49 on the path together grow it" in why.message
    assert "clip_grad_norm_" in why.message and "LSTM/GRU" in why.message
    assert why.where is not None and dbg.graph.node(why.where).module == "rec"
    assert "exploding" not in dbg.why("out.bias").message
    dbg.close()


def test_an_exploding_gradient_says_nothing_of_nan() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    dbg = gs.debugger(model, inputs=torch.randn(4, 8), loss=lambda out: (out * 1e21).sum())
    why = dbg.why("0.weight")
    assert "exploding" in why.message and "NaN" not in why.message and "non-finite" not in why.message
    dbg.close()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_no_leaf_of_the_zoo_is_called_exploding_or_vanishing(name: str) -> None:
    dbg = gs.debugger(lambda: sum(r.sum() for r in ZOO[name]().roots))
    leaves = [n for n in dbg.graph.nodes if n.kind == "leaf"]
    assert leaves and all(why_extreme.extreme(n.id, n, dbg.graph) is None for n in leaves)
    dbg.close()


@pytest.mark.parametrize("name", CASES)
def test_no_leaf_of_the_runnable_zoo_is_called_exploding_or_vanishing(name: str) -> None:
    case = make(name)
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    for node in dbg.graph.nodes:
        if node.leaf is not None and node.leaf.name:
            message = dbg.why(node.leaf.name).message
            assert "exploding" not in message and "vanishing" not in message, message
    dbg.close()


def test_a_bias_before_batchnorm_is_no_vanishing_gradient() -> None:
    # its gradient cancels to rounding noise in the layer's own sum over the batch (BatchNorm removes
    # the mean): a millionth of the rest, yet what reached its layer was not small
    dbg = gs.debugger(make("conv_bn").model, inputs=make("conv_bn").inputs, loss=make("conv_bn").loss)
    bias = dbg.graph.node("leaf:conv.bias")
    assert bias.grad_norm is not None and bias.grad_norm < 1e-6
    assert why_extreme.extreme("conv.bias", bias, dbg.graph) is None
    dbg.close()
