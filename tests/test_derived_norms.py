"""Runnable runs hook no node whose gradient norm is its child's (hooks.derivable): every such op,
alone and in chains, gives the numbers a hook on the node itself gives."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import gradsight as gs
from gradsight._capture.hooks import ELEMENTWISE, NORM_PRESERVING, derivable
from gradsight._capture.records import CaptureOptions
from gradsight._capture.walk import assign_ids, collect

OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "TBackward0": lambda h: h[0].t(),  # a chain: t of a select
    "TransposeBackward0": lambda h: h.transpose(1, 2),
    "TransposeBackward1": lambda h: h.clone().transpose_(1, 2),
    "PermuteBackward0": lambda h: h.permute(2, 0, 1),
    "ViewBackward0": lambda h: h.view(24).view(4, 6),  # a chain of two
    "UnsafeViewBackward0": lambda h: torch.ops.aten._unsafe_view(h, (24,)),
    "ReshapeAliasBackward0": lambda h: torch.ops.aten._reshape_alias(h, (24,), (1,)),
    "AliasBackward0": lambda h: torch.ops.aten.alias(h),
    "CloneBackward0": lambda h: h.transpose(1, 2).contiguous(),
    "NegBackward0": lambda h: -h,
    "SqueezeBackward0": lambda h: h.squeeze(),
    "SqueezeBackward1": lambda h: h.squeeze(0),
    "SqueezeBackward2": lambda h: h.squeeze((0,)),
    "UnsqueezeBackward0": lambda h: h.unsqueeze(0),
    "UnsqueezeBackward1": lambda h: h.clone().unsqueeze_(0),
    "SelectBackward0": lambda h: h[0, 1],
    "SliceBackward0": lambda h: h[:, 1:3],
    # elementwise: the derived edge is whichever input has a single consumer
    "AddBackward0": lambda h: h + h.sin(),  # h also feeds sin: derived from SinBackward0 (edge 1)
    "SubBackward0": lambda h: h.cos() - h,  # edge 0, CosBackward0
    "RsubBackward0": lambda h: torch.rsub(h.cos(), h),
    "RsubBackward1": lambda h: 1 - h,
}


def test_every_norm_preserving_op_is_covered() -> None:
    assert set(OPS) == NORM_PRESERVING | ELEMENTWISE


def _runs(
    op: Callable[[torch.Tensor], torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> tuple[gs.Debugger, gs.Debugger]:
    torch.manual_seed(0)
    x = torch.randn(1, 4, 6, requires_grad=True)

    def fn() -> torch.Tensor:
        y = op(x.exp())
        return (y * torch.linspace(-2, 3, y.numel()).reshape(y.shape)).sum()

    hooked = gs.debugger(fn)  # a small graph: every node hooked, every gradient kept
    monkeypatch.setattr(gs.options, "keep_all_below", 0)  # as if big: gradients not kept, views derived
    return hooked, gs.debugger(fn)


@pytest.mark.parametrize("name", sorted(OPS))
def test_derived_norm_equals_the_hooked_one(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hooked, derived = _runs(OPS[name], monkeypatch)
    nodes = [n for n in derived.graph.nodes if n.name == name]
    assert nodes
    for node in nodes:
        mine, theirs = node.grad_in[0], hooked.graph.node(node.id).grad_in[0]
        assert mine is not None and theirs is not None and theirs.norm is not None
        assert node.executed and hooked.graph.node(node.id).executed
        assert (mine.shape, mine.dtype, mine.numel) == (theirs.shape, theirs.dtype, theirs.numel)
        assert mine.norm == pytest.approx(theirs.norm, rel=1e-6)


@pytest.mark.parametrize("name", sorted(OPS))
def test_the_op_is_derived_not_hooked(name: str) -> None:
    x = torch.randn(1, 4, 6, requires_grad=True)
    root = OPS[name](x.exp()).sum()
    c, _ = collect([root.grad_fn], CaptureOptions())
    assign_ids(c)
    picked = derivable(c, keep=())
    assert any(c.names[i] == name for i in picked)
    assert not derivable(c, keep=range(len(c.names)))  # kept nodes are hooked: their tensors are wanted


W64 = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(
    "op",
    [
        lambda h: h + h.sum(0).sin(),  # the sin input is broadcast (its gradient is summed); h feeds two ops
        lambda h: torch.add(h.sin(), h.cos(), alpha=2),  # alpha 2 doubles the second input's gradient
        lambda h: (h.sin() + W64) * W64,  # the float32 input gets the float64 gradient rounded; W64 feeds two
    ],
)
def test_elementwise_not_derived_through_broadcast_alpha_or_cast(op: Callable[[torch.Tensor], torch.Tensor]) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    root = op(x.exp()).sum()
    c, _ = collect([root.grad_fn], CaptureOptions())
    node = next(i for i, n in enumerate(c.names) if n == "AddBackward0")
    assert node not in derivable(c, keep=())


def test_not_derived_when_the_child_has_other_consumers_or_is_a_root() -> None:
    x = torch.randn(4, 6, requires_grad=True)
    h = x.exp()
    root = (h.t().sum() + h.sum()) * 1.0  # h feeds the transpose and a sum: its gradient is their total
    c, _ = collect([root.grad_fn], CaptureOptions())
    assert not any(c.names[i] == "TBackward0" for i in derivable(c, keep=()))
    v = x.exp()
    w = v.view(24)  # v is a root too (an external gradient may flow into it)
    c, _ = collect([w.grad_fn, v.grad_fn], CaptureOptions())
    assert not derivable(c, keep=())


def test_a_transposed_weight_shows_what_its_leaf_received(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(4, 6, requires_grad=True)

    def fn() -> torch.Tensor:
        return (x @ w.t()).sum()

    node = next(n for n in gs.debugger(fn).graph.nodes if n.name == "TBackward0")
    assert node.executed and node.grad_in[0] is not None and node.grad_in[0].shape == (6, 4)
    assert node.grad_in[0].norm == pytest.approx(float(torch.ones(4, 4).matmul(x.detach()).norm()), rel=1e-6)


def test_not_derived_through_a_tensor_hook_that_changes_the_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    w = torch.randn(6, 4, requires_grad=True)
    w.register_hook(lambda g: g * 3)  # a leaf's hook changes what autograd.grad returns for it

    def fn() -> torch.Tensor:
        h = x.exp()
        h.register_hook(lambda g: g * 10)  # changes the gradient before ExpBackward0's prehooks see it
        return (h.t() * torch.arange(24.0).reshape(6, 4)).sum() + (x @ w.t().t()).sum()

    hooked = gs.debugger(fn)
    monkeypatch.setattr(gs.options, "keep_all_below", 0)
    derived = gs.debugger(fn)
    for node in derived.graph.nodes:
        if node.name == "TBackward0" and node.grad_in and node.grad_in[0] is not None:
            theirs = hooked.graph.node(node.id).grad_in[0]
            assert theirs is not None and node.grad_in[0].norm == pytest.approx(theirs.norm, rel=1e-6), node.id


def test_not_derived_through_a_node_of_the_users_earlier_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(4, 6, requires_grad=True)
    h = x.exp()  # built before the run, and its node hooked directly: a prehook Python cannot see
    assert h.grad_fn is not None
    h.grad_fn.register_prehook(lambda grads: (grads[0] * 3,))

    def fn() -> torch.Tensor:
        return (h.t() * torch.arange(24.0).reshape(6, 4)).sum()

    monkeypatch.setattr(gs.options, "keep_all_below", 0)
    dbg = gs.debugger(fn)
    seen: list[float] = []
    y = h.t()
    assert y.grad_fn is not None
    y.grad_fn.register_prehook(lambda grads: seen.append(float(grads[0].norm())))
    torch.autograd.grad((y * torch.arange(24.0).reshape(6, 4)).sum(), [x])
    (t,) = [n for n in dbg.graph.nodes if n.name == "TBackward0"]
    assert t.grad_in[0] is not None and t.grad_in[0].norm == pytest.approx(seen[0], rel=1e-6)
