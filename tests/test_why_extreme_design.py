"""why() tells a gradient made small by one node from a vanishing one: a multiply by a small learned
scale (LayerScale) is that parameter's scale, a node after which the loss is constant in its input is
said so; the wire's reasons for exploding, vanishing and a backward that raised are theirs."""

from __future__ import annotations

import torch
from torch import nn

import gradsight as gs


class LayerScaled(nn.Module):
    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(1e-6 * torch.ones(d))  # ConvNeXt / CaiT's init

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(nn.functional.gelu(self.fc1(x))) * self.gamma


def test_a_layer_scale_is_named_as_the_parameters_scale_not_a_vanishing_gradient() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), LayerScaled(), LayerScaled(), nn.Linear(16, 3))
    x, y = torch.randn(8, 8), torch.randint(0, 3, (8,))
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.cross_entropy(out, y))
    for name in ("1.fc1.weight", "1.fc2.bias", "2.fc1.bias"):
        why = dbg.why(name)
        assert why.reason != "vanishing", why
        assert f"the learned parameter {name[:1]}.gamma, whose values are at most 1e-06" in why.message
    dbg.close()


def test_a_loss_constant_in_its_input_is_said_so_not_vanishing() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 5))
    dbg = gs.debugger(model, inputs=torch.randn(32, 10), loss=lambda out: torch.softmax(out, -1).sum())
    (softmax,) = dbg.graph.find("SoftmaxBackward0")
    for name in ("0.weight", "2.weight"):
        why = dbg.why(name)
        assert why.reason == "zero" and why.where == softmax.id, why
        assert "in one node, SoftmaxBackward0, so what comes after it is (nearly) constant" in why.message
        assert "vanishing" not in why.message.split("Not a vanishing")[0]
    dbg.close()


def test_exploding_vanishing_and_backward_error_have_their_own_reasons() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, requires_grad=True)
    dbg = gs.debugger(lambda: (w * 1e5).sum())
    assert dbg.why("w").reason == "exploding"
    dbg.close()
    model = nn.Sequential(*[m for _ in range(12) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 1))
    dbg = gs.debugger(model, inputs=torch.randn(32, 16), loss=lambda out: out.pow(2).mean())
    assert dbg.why("0.weight").reason == "vanishing"
    dbg.close()
    v = torch.randn(3, requires_grad=True)

    def edits() -> torch.Tensor:
        h = torch.sigmoid(v)
        h += 1  # sigmoid saved h: the backward raises
        return h.sum()

    dbg = gs.debugger(edits)
    assert dbg.status == "error" and dbg.why("v").reason == "backward_error"
    dbg.close()


def test_a_huge_loss_weight_is_named_where_it_multiplies_the_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: 1e7 * nn.functional.mse_loss(out, y))
    (root,) = dbg.graph.roots
    for name in ("0.weight", "4.bias"):
        why = dbg.why(name)
        assert why.reason == "exploding" and why.where == root, why
        assert "It grows most in MulBackward0 (×1e+07 there)" in why.message and "loss weight" in why.message
    dbg.close()


def test_an_exploding_recurrent_weight_is_named_with_its_recurrence_and_the_exploded_loss() -> None:
    torch.manual_seed(0)
    rnn, head = nn.RNN(4, 16, batch_first=True, nonlinearity="relu"), nn.Linear(16, 1)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(1.3 * torch.eye(16))
        rnn.weight_ih_l0.mul_(0.01)
    x = torch.randn(2, 50, 4)
    dbg = gs.debugger(lambda: head(rnn(x)[0][:, -1]).pow(2).mean())
    why = dbg.why("rnn.weight_hh_l0")
    assert why.reason == "exploding", why
    assert "rnn.weight_hh_l0 is applied 50 times by AddmmBackward0 (in rnn)" in why.message
    assert "initialize it orthogonal" in why.message and "the forward's values exploded too" in why.message
    assert dbg.graph.node(why.where or "").module == "rnn"
    dbg.close()
