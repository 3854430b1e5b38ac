"""The walk: structure, order, ids, leaves, opaque regions, and deep graphs without recursion."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gradsight._capture.names import leaf_names_from_params
from gradsight._capture.records import CaptureOptions
from gradsight._capture.tensors import graph_of
from gradsight._capture.walk import capture
from gradsight.graph import TensorSummary, Unavailable
from tests.zoo import ZOO, Scale


def names_of(graph):  # type: ignore[no-untyped-def]
    return [n.name for n in graph.nodes]


def test_seed_sin_chain_matches_next_functions() -> None:
    case = ZOO["seed_sin"]()
    (out3,) = case.roots
    graph = graph_of([out3], CaptureOptions(leaf_names=leaf_names_from_params(case.params)))
    assert names_of(graph) == ["AddBackward0", "MulBackward0", "SinBackward0", "AccumulateGrad"]
    add, mul, sin, acc = graph.nodes
    # next_functions order, including the None edge for the constant (the seed's "(MulBackward0, None)")
    assert add.next == ((mul.id, 0), (None, 0))
    assert [e[0] is None for e in out3.grad_fn.next_functions] == [e[0] is None for e in add.next]
    assert sin.next == ((acc.id, 0),)
    assert add.kind == "root" and acc.kind == "leaf" and sin.kind == "op"
    assert graph.roots == (add.id,)
    assert acc.leaf is not None and acc.leaf.name == "input1" and acc.leaf.requires_grad
    saved_self = sin.saved["_saved_self"]
    assert isinstance(saved_self, TensorSummary) and saved_self.shape == (25,)
    assert saved_self.min == pytest.approx(0.0) and saved_self.max == pytest.approx(2 * torch.pi, rel=1e-6)
    assert add.outputs[0].shape == (25,)


def test_ids_are_stable_across_reruns_and_not_object_ids() -> None:
    first = graph_of(ZOO["seed_tiny_model"]().roots, CaptureOptions())
    second = graph_of(ZOO["seed_tiny_model"]().roots, CaptureOptions())
    assert [n.id for n in first.nodes] == [n.id for n in second.nodes]
    assert all(not n.id.isdigit() for n in first.nodes)


def test_named_parameters_become_leaf_ids_and_modules() -> None:
    case = ZOO["seed_tiny_model"]()
    graph = graph_of(case.roots, CaptureOptions(leaf_names=leaf_names_from_params(case.params)))
    leaves = {n.leaf.name: n for n in graph.leaves if n.leaf}
    assert set(leaves) == {"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"}
    assert leaves["layer1.weight"].id == "leaf:layer1.weight"
    assert leaves["layer1.weight"].leaf.is_parameter  # type: ignore[union-attr]
    addmm = [n for n in graph.nodes if n.name == "AddmmBackward0"]
    assert sorted(n.module for n in addmm) == ["layer1", "layer2"]  # type: ignore[type-var]


def test_order_is_roots_first_then_topological() -> None:
    graph = graph_of(ZOO["conv_bn"]().roots)
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    assert graph.nodes[0].id in graph.roots
    for n in graph.nodes:
        for dst, _ in n.next:
            if dst is not None:
                assert position[dst] > position[n.id], (n.id, dst)


def test_two_roots_share_nodes_once() -> None:
    case = ZOO["two_roots"]()
    graph = graph_of(case.roots, CaptureOptions(leaf_names=leaf_names_from_params(case.params)))
    assert len(graph.roots) == 2
    assert [n.name for n in graph.nodes].count("ExpBackward0") == 1
    assert [n.kind for n in graph.nodes[:2]] == ["root", "root"]


def test_same_root_twice_is_one_root() -> None:
    x = torch.ones(2, requires_grad=True)
    y = (x * 3).sum()
    graph = graph_of([y, y])
    assert len(graph.roots) == 1


def test_custom_function_is_opaque_with_ctx_values() -> None:
    graph = graph_of(ZOO["custom_function_and_dims"]().roots)
    node = graph.find("ScaleBackward")[0]
    assert node.kind == "opaque"
    assert node.saved["k"] == 3.0
    assert isinstance(node.saved["saved_tensors[0]"], TensorSummary)


def test_negative_dims_are_decoded() -> None:
    graph = graph_of(ZOO["custom_function_and_dims"]().roots)
    softmax = graph.find("SoftmaxBackward0")[0]
    assert softmax.saved["_saved_dim"] == -1
    summ = graph.find("SumBackward1")[0]
    assert summ.saved["_saved_dim"] == (-1,)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_a_losss_saved_reduction_reads_as_the_reduction_the_user_wrote(reduction: str) -> None:
    from torch.nn import _reduction

    x = torch.randn(4, 3, requires_grad=True)
    losses = [nn.functional.mse_loss(x, torch.zeros(4, 3), reduction=reduction),
              nn.functional.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction=reduction)]  # fmt: skip
    for loss, op in zip(losses, ("MseLossBackward0", "NllLossBackward0"), strict=True):
        node = loss.grad_fn if loss.grad_fn.name() == op else loss.grad_fn.next_functions[0][0]
        assert node.name() == op and node._saved_reduction == _reduction.get_enum(reduction)  # torch's enum
        assert graph_of([loss]).find(op)[0].saved["_saved_reduction"] == reduction


def test_saved_tensors_freed_by_backward_are_explained() -> None:
    x = torch.randn(4, requires_grad=True)
    y = x.sin().sum()
    y.backward()
    graph = graph_of([y])
    value = graph.find("SinBackward0")[0].saved["_saved_self"]
    assert isinstance(value, Unavailable) and "freed by backward" in value.reason
    assert any("retain_graph=True" in note for note in graph.notes)


def test_non_reentrant_checkpoint_is_not_recomputed() -> None:
    calls = []

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return self.lin(x).relu()

    block = Block()
    y = checkpoint(block, torch.randn(2, 4, requires_grad=True), use_reentrant=False).sum()
    assert len(calls) == 1
    graph = graph_of([y])
    assert len(calls) == 1, "reading saved tensors must not re-run the checkpointed forward"
    relu = graph.find("ReluBackward0")[0]
    assert isinstance(relu.saved["_saved_result"], Unavailable)
    assert "checkpoint" in relu.saved["_saved_result"].reason  # type: ignore[union-attr]


def test_checkpoint_is_not_recomputed_when_only_some_saved_tensors_carry_its_hook() -> None:
    # Inside one region, AddmmBackward0 saves mat1 through checkpoint's hooks but not its weight,
    # and a custom Function's ctx saves through them too: no read may re-run the forward (it would
    # update spectral norm's vectors and change the gradient the user's backward then computes).
    calls = []

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            ctx.scale = 2.0
            return x * x

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return ctx.scale * x * g

    lin = nn.Linear(4, 4)

    def region(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return Square.apply(lin(x.sin()))  # type: ignore[no-any-return]

    x = torch.randn(2, 4, requires_grad=True)
    y = checkpoint(region, x, use_reentrant=False).sum()
    graph = graph_of([y])
    assert len(calls) == 1, "reading saved tensors must not re-run the checkpointed forward"
    square = graph.find("SquareBackward")[0]
    assert isinstance(square.saved["saved_tensors"], Unavailable) and square.saved["scale"] == 2.0
    addmm = graph.find("AddmmBackward0")[0]
    assert isinstance(addmm.saved["_saved_mat1"], Unavailable)
    y.backward()
    assert len(calls) == 2 and x.grad is not None


def test_reentrant_checkpoint_is_one_opaque_node() -> None:
    lin = nn.Linear(3, 3)
    y = checkpoint(lin, torch.randn(2, 3, requires_grad=True), use_reentrant=True).sum()
    node = graph_of([y]).find("CheckpointFunctionBackward")[0]
    assert node.kind == "opaque"


def test_backward_hook_function_nodes_are_opaque() -> None:
    lin = nn.Linear(2, 2)
    handle = lin.register_full_backward_hook(lambda *a: None)
    try:
        y = lin(torch.randn(1, 2, requires_grad=True)).sum()
        kinds = {n.name: n.kind for n in graph_of([y]).nodes}
    finally:
        handle.remove()
    assert kinds["BackwardHookFunctionBackward"] == "opaque"


def test_deep_chain_walks_without_recursion() -> None:
    x = torch.randn(2, requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y * 1.0001
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # a recursive walk would die here
    try:
        graph = graph_of([y.sum()], CaptureOptions(stats=False))
    finally:
        sys.setrecursionlimit(old)
    assert len(graph) == 20_002
    assert graph.nodes[-1].kind == "leaf"


def test_capture_does_not_touch_user_state() -> None:
    case = ZOO["seed_tiny_model"]()
    model = case.keep
    rng = torch.get_rng_state()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    graph = graph_of(case.roots, CaptureOptions(leaf_names=leaf_names_from_params(model)))
    assert len(graph) > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(params[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    case.roots[0].backward()  # the graph is still intact for the user's backward
    assert model.layer1.weight.grad is not None


def test_leaf_grad_is_summarized() -> None:
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = (w * torch.tensor([1.0, 2.0, 3.0])).sum()
    loss.backward(retain_graph=True)
    graph = graph_of([loss], CaptureOptions(leaf_names={w: "w"}))
    leaf = graph.leaves[0].leaf
    assert leaf is not None and leaf.grad is not None
    assert leaf.grad.norm == pytest.approx(torch.tensor([1.0, 2.0, 3.0]).norm().item())


def test_find_searches_names_modules_and_leaves() -> None:
    case = ZOO["seed_tiny_model"]()
    graph = graph_of(case.roots, CaptureOptions(leaf_names=leaf_names_from_params(case.params)))
    assert {n.name for n in graph.find("addmm")} == {"AddmmBackward0"}
    assert {n.id for n in graph.find("layer1")} >= {"leaf:layer1.weight", "layer1/AddmmBackward0#0"}
    assert graph.find("no such thing") == ()


def test_capture_accepts_nodes_directly() -> None:
    x = torch.ones(3, requires_grad=True)
    y = Scale.apply(x, 2.0).sum()
    graph = capture([y.grad_fn])
    assert [n.kind for n in graph.nodes] == ["root", "opaque", "leaf"]


def test_fast_node_construction_covers_every_field() -> None:
    import dataclasses

    from gradsight.graph import _NODE_FIELDS, Node

    assert frozenset(f.name for f in dataclasses.fields(Node)) == _NODE_FIELDS
    fields = {f.name: getattr(Node(id="a#0", name="A", kind="op"), f.name) for f in dataclasses.fields(Node)}
    assert Node.fast(**fields) == Node(id="a#0", name="A", kind="op")
    with pytest.raises(TypeError):
        Node.fast(id="a#0")


def test_torch_compile_region_is_one_opaque_node() -> None:
    import torch._dynamo

    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1))
    compiled = torch.compile(model, backend="aot_eager")
    try:
        y = compiled(torch.randn(2, 4)).sum()
        graph = graph_of([y], CaptureOptions(leaf_names=leaf_names_from_params(model)))
    finally:
        torch._dynamo.reset()
    node = graph.find("CompiledFunctionBackward")[0]
    assert node.kind == "opaque" and node.opaque_kind == "compiled"
    assert {n.leaf.name for n in graph.leaves if n.leaf} >= {"0.weight", "2.bias"}


def test_every_output_of_a_multi_output_node_is_described() -> None:
    # SplitWithSizesBackward0 has one gradient input per piece: three outputs, of two shapes and dtypes kept
    x = torch.arange(10.0, dtype=torch.float64, requires_grad=True)
    a, b, c = x.split([4, 4, 2])
    graph = graph_of([(a * b).sum() + c.sum()])
    split = graph.find("SplitWithSizesBackward0")[0]
    assert [o.shape for o in split.outputs] == [(4,), (4,), (2,)]
    assert {o.dtype for o in split.outputs} == {"float64"}
    # summaries without statistics are shared between equal tensors (interned), never mixed up
    mul = graph.find("MulBackward0")[0]
    assert mul.saved["_saved_self"].shape == mul.saved["_saved_other"].shape == (4,)
    assert graph.find("AccumulateGrad")[0].leaf.shape == (10,)  # type: ignore[union-attr]


def test_capture_leaves_the_garbage_collector_as_it_was() -> None:
    import gc

    x = torch.ones(3, requires_grad=True)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    graph_of([(x * 2).sum()])
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.freeze()  # a program that froze its objects (e.g. before fork) keeps them frozen
    try:
        frozen = gc.get_freeze_count()
        graph_of([(x * 3).sum()])
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    gc.disable()  # and a disabled collector stays disabled
    try:
        graph_of([(x * 4).sum()])
        assert not gc.isenabled()
    finally:
        gc.enable()
