"""What a runnable debugger is given (clear errors before anything runs), the norms of sparse
gradients at any graph size, and module paths only from names that are attribute paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import gradsight as gs
from gradsight._capture.names import infer_module, module_of_leaf, name_parts
from gradsight.graph import LeafInfo


class _Deep(nn.Module):
    """A sparse embedding under ``depth`` tanh-and-scale steps: 2 nodes a step."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4, sparse=True)
        self.depth = depth

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        for _ in range(self.depth):
            h = torch.tanh(h) * 1.01
        return h.sum()


@pytest.mark.parametrize("depth", [10, 70])  # 23 nodes (eager statistics) and 143 (past EAGER_NODES)
def test_a_sparse_gradient_has_its_norm_at_any_graph_size(depth: int) -> None:
    torch.manual_seed(0)
    model = _Deep(depth)
    ids = torch.tensor([[1, 2, 3]])
    (true,) = torch.autograd.grad(model(ids), [model.emb.weight])
    expected = float(true.coalesce().to_dense().norm())
    dbg = gs.debugger(model, inputs=ids)
    try:
        assert (len(dbg.graph) > 128) == (depth == 70)
        leaf = dbg.graph.node("leaf:emb.weight")
        assert leaf.grad_in[0] is not None and leaf.grad_in[0].layout == "sparse_coo"
        assert leaf.grad_norm == pytest.approx(expected, rel=1e-5)
        assert leaf.grad_in[0].norm == pytest.approx(expected, rel=1e-5)
        (embedding,) = [n for n in dbg.graph.nodes if n.name == "EmbeddingBackward0"]
        assert embedding.grad_out[0] is not None and embedding.grad_out[0].norm == pytest.approx(expected, rel=1e-5)
        assert model.emb.weight.grad is None
    finally:
        dbg.close()


def test_a_dict_key_with_dots_is_no_module_path() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2))
    params = {k: v.detach().clone().requires_grad_() for k, v in m.named_parameters()}
    x = torch.randn(4, 3)
    dbg = gs.debugger(lambda: functional_call(m, params, (x,)).pow(2).sum())
    try:
        leaves = {n.leaf.name: n for n in dbg.graph.leaves if n.leaf is not None}
        assert set(leaves) == {"params['0.bias']", "params['0.weight']"}
        assert all(n.module is None for n in leaves.values())
        assert {n.module for n in dbg.graph.nodes} == {None, "m.0"}  # ops: the module that ran them
        assert not [n for n in dbg.graph.nodes if n.module and "params" in n.module]
    finally:
        dbg.close()


def test_a_module_reached_through_a_dict_keeps_its_path() -> None:
    torch.manual_seed(0)
    models = {"enc": nn.Linear(3, 2)}
    x = torch.randn(4, 3)
    dbg = gs.debugger(lambda: models["enc"](x).sum())
    try:
        leaf = dbg.graph.node("leaf:models['enc'].weight")
        assert leaf.module == "models['enc']"
    finally:
        dbg.close()


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("layer1.weight", "layer1"),
        ("model.layers.0.attn.weight", "model.layers.0.attn"),
        ("models['enc'].weight", "models['enc']"),
        ("m.layers[0].weight", "m.layers[0]"),
        ("params['0.bias']", None),
        ('params["a.b"]', None),
        ("params['it\\'s.x'].w", "params['it\\'s.x']"),
        ("input[1]", None),
        ("input", None),
        ("a..b", None),
        ("w[0.x", None),
        ("", None),
        (None, None),
    ],
)
def test_module_of_a_leaf_name(name: str | None, module: str | None) -> None:
    assert module_of_leaf(name) == module


def test_infer_module_ignores_subscripts_and_meets_at_the_common_path() -> None:
    def leaf(name: str) -> LeafInfo:
        return LeafInfo(name=name, shape=(2,), requires_grad=True)

    assert infer_module([leaf("params['0.bias']"), None]) is None
    assert infer_module([leaf("params['0.bias']"), leaf("enc.layer1.weight")]) == "enc.layer1"
    assert infer_module([leaf("enc['a.b'].x.w"), leaf("enc['a.b'].y.w")]) == "enc['a.b']"
    assert name_parts("a[']'].b") == ["a[']']", "b"]


def test_a_module_class_is_refused_saying_to_instantiate_it() -> None:
    with pytest.raises(TypeError, match=r"got the class Linear, not a model: create the model first"):
        gs.debugger(nn.Linear)
    with pytest.raises(TypeError, match=r"got the class Linear"):
        gs.debugger(nn.Linear, inputs=torch.ones(1, 3))
    with pytest.raises(TypeError, match=r"got the class dict itself"):
        gs.debugger(dict)


def test_inputs_as_a_generator_are_refused_before_anything_runs() -> None:
    # The first run would use the generator up and every re-run would call the model with nothing.
    model = nn.Linear(3, 2)
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    gen = (torch.randn(4, 3) for _ in range(2))
    with pytest.raises(TypeError, match=r"inputs= got a generator, which one run would use up.*inputs=tuple\(gen\)"):
        gs.debugger(model, inputs=gen)
    assert not calls and len(list(gen)) == 2 and model.weight.grad is None


def test_inputs_as_a_list_are_refused_before_anything_runs() -> None:
    model = nn.Linear(3, 2)
    calls: list[int] = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randn(4, 3)
    rng = torch.get_rng_state()
    with pytest.raises(TypeError, match=r"not a\s+list: pass inputs=tuple\(batch\).*inputs=\(\[x\],\)"):
        gs.debugger(model, inputs=[x])
    assert not calls and torch.equal(rng, torch.get_rng_state()) and model.weight.grad is None
    # the documented forms still run: a tensor, a tuple of positional arguments, one list argument in a tuple
    takes_list = nn.Module()
    takes_list.lin = model
    takes_list.forward = lambda xs: takes_list.lin(xs[0]).sum()  # type: ignore[method-assign]
    for dbg in (gs.debugger(model, inputs=x), gs.debugger(model, inputs=(x,)), gs.debugger(takes_list, inputs=([x],))):
        assert dbg.status == "ready" and dbg.graph.leaves
        dbg.close()


def test_grad_output_with_loss_is_the_gradient_of_what_loss_returns() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    v = torch.randn(4, 2)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out * 2, grad_output=v)
    try:
        (expected,) = torch.autograd.grad(model(x) * 2, [model.weight], v)
        assert not dbg.error
        assert dbg.graph.node("leaf:weight").grad_norm == pytest.approx(float(expected.norm()), rel=1e-5)
    finally:
        dbg.close()


def test_a_grad_output_of_the_wrong_shape_is_explained_and_the_graph_kept() -> None:
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.sum(), grad_output=torch.ones(4, 2))
    try:
        assert dbg.status == "error"
        last = dbg.error.strip().splitlines()[-1]
        assert last.startswith("ValueError: grad_output has shape (4, 2) but loss(output) has shape ()")
        assert "leave it out for a scalar loss" in last
        assert dbg.graph.leaves and model.weight.grad is None
    finally:
        dbg.close()
    dbg = gs.debugger(model, inputs=x, grad_output=torch.ones(3))
    try:
        assert "grad_output has shape (3,) but the model's output has shape (4, 2)" in dbg.error
    finally:
        dbg.close()


@pytest.mark.parametrize("bad", [1.0, "ones", [], (torch.ones(4, 2), 1.0)])
def test_a_grad_output_that_is_no_tensor_is_refused(bad: object) -> None:
    with pytest.raises(TypeError, match="grad_output must be a tensor"):
        gs.debugger(nn.Linear(3, 2), inputs=torch.randn(4, 3), grad_output=bad)


def test_a_function_returning_none_is_called_a_function() -> None:
    dbg = gs.debugger(lambda: None)
    try:
        last = dbg.error.strip().splitlines()[-1]
        assert last.startswith("TypeError: the function returned None, not the tensor to differentiate")
        assert "the model" not in last
    finally:
        dbg.close()
    dbg = gs.debugger(lambda: 1)
    try:
        assert "the function returned int" in dbg.error
    finally:
        dbg.close()

    class Nothing(nn.Module):
        def forward(self, x: torch.Tensor) -> None:
            return None

    dbg = gs.debugger(Nothing(), inputs=torch.ones(1))
    try:
        assert "the model returned None with no tensors" in dbg.error
    finally:
        dbg.close()
