"""Runnable debuggers: the oracle (same gradients, bitwise), nothing perturbed, errors contained."""

from __future__ import annotations

import copy
import linecache
import random
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight.graph import Node, TensorSummary
from tests.run_zoo import CASES, MLP, RunCase, call, input_leaves, make


def reference_grads(case: RunCase) -> dict[str, torch.Tensor]:
    """What the user's own loss.backward() gives, leaving .grad, buffers and the RNGs as they were."""
    rng = torch.get_rng_state(), random.getstate(), np.random.get_state()
    buffers = {k: v.clone() for k, v in case.model.named_buffers()}
    out = call(case)
    loss = case.loss(out) if case.loss is not None else out
    loss.backward()
    leaves = {**dict(case.model.named_parameters()), **input_leaves(case)}
    grads = {k: v.grad.clone() for k, v in leaves.items() if v.grad is not None}
    for v in leaves.values():
        v.grad = None
    with torch.no_grad():
        for k, v in case.model.named_buffers():
            v.copy_(buffers[k])
        for name, b in buffers.items():  # a buffer the forward reassigned: the same values again
            module = case.model.get_submodule(name.rpartition(".")[0])
            setattr(module, name.rpartition(".")[2], b)
    torch.set_rng_state(rng[0])
    random.setstate(rng[1])
    np.random.set_state(rng[2])
    return grads


def received(dbg: gs.Debugger) -> dict[str, torch.Tensor]:
    """The gradient each named leaf received in the debugger's run (the kept tensors themselves)."""
    cap = dbg._captured
    out = {}
    for node in dbg.graph.leaves:
        t = cap.store.get((cap.index_of[node.id], "grad-in:0"))
        if t is not None and node.leaf is not None and node.leaf.name:
            out[node.leaf.name] = t
    return out


@pytest.mark.parametrize("name", CASES)
def test_oracle_gradients_are_bitwise_identical(name: str) -> None:
    case = make(name)
    expected = reference_grads(case)
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    assert dbg.status == "ready", dbg.error
    got = received(dbg)
    if name == "reentrant_checkpoint":  # its region's parameters are no leaves: a note gives their norms
        inside = {k for k in expected if k.startswith("inner.")}
        assert inside and all(
            f"{k} (gradient norm {float(expected[k].norm()):.4g})" in dbg.graph.notes[-1] for k in inside
        )
        expected = {k: v for k, v in expected.items() if k not in inside}
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    for key, grad in expected.items():
        assert torch.equal(got[key], grad), key
    dbg.close()


def snapshot(case: RunCase) -> dict[str, Any]:
    model = case.model
    tensors = {**dict(model.named_parameters()), **input_leaves(case)}
    hook_dicts = {}
    for name, m in model.named_modules():
        for attr, value in vars(m).items():
            if attr.endswith("hooks") or "hooks_" in attr:
                hook_dicts[f"{name}.{attr}"] = dict(value) if hasattr(value, "items") else value
    for attr, value in vars(torch.nn.modules.module).items():  # the global module hooks too
        if attr.startswith("_global_") and "hooks" in attr and hasattr(value, "items"):
            hook_dicts[f"torch.nn.modules.module.{attr}"] = dict(value)
    for name, t in tensors.items():
        hook_dicts[f"{name}._backward_hooks"] = dict(t._backward_hooks or {})
        hook_dicts[f"{name}._post_accumulate_grad_hooks"] = dict(t._post_accumulate_grad_hooks or {})
    return {
        "values": {k: v.detach().clone() for k, v in tensors.items()},
        "grads": {k: None if v.grad is None else v.grad.clone() for k, v in tensors.items()},
        "requires_grad": {k: v.requires_grad for k, v in tensors.items()},
        "buffers": {k: v.clone() for k, v in model.named_buffers()},
        "buffer_objects": dict(model.named_buffers()),  # the same tensor objects, not just the values
        "python_rng": (random.getstate(), np.random.get_state()[1].tolist()),
        "training": {k: m.training for k, m in model.named_modules()},
        "rng": torch.get_rng_state(),
        "hooks": hook_dicts,
        "grad_mode": torch.is_grad_enabled(),
        "warning_filters": list(warnings.filters),
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for k in ("requires_grad", "training", "hooks", "grad_mode", "warning_filters"):
        assert before[k] == after[k], k
    assert torch.equal(before["rng"], after["rng"])
    assert before["python_rng"] == after["python_rng"]
    assert before["buffer_objects"].keys() == after["buffer_objects"].keys()
    assert all(b is after["buffer_objects"][k] for k, b in before["buffer_objects"].items())
    for k in ("values", "buffers"):
        assert before[k].keys() == after[k].keys()
        for name, v in before[k].items():
            assert torch.equal(v, after[k][name]), (k, name)
    for name, g in before["grads"].items():
        assert (g is None) == (after["grads"][name] is None), name
        if g is not None:
            assert torch.equal(g, after["grads"][name]), name


@pytest.mark.parametrize("name", CASES)
def test_run_and_close_leave_user_state_exactly_as_before(name: str) -> None:
    case = make(name)
    before = snapshot(case)
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    assert dbg.status == "ready", dbg.error
    assert_same(before, snapshot(case))
    dbg.close()
    assert_same(before, snapshot(case))


def test_existing_grads_are_left_alone() -> None:
    case = make("mlp")
    for p in case.model.parameters():
        p.grad = torch.full_like(p, 7.0)
    before = snapshot(case)
    gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    assert_same(before, snapshot(case))


def nodes_named(dbg: gs.Debugger, name: str) -> list[Node]:
    return [n for n in dbg.graph.nodes if n.name == name]


def test_gradients_through_every_node_and_modules() -> None:
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    graph = dbg.graph
    assert graph.run.mode == "runnable" and graph.run.root_gradient == "scalar"
    assert graph.run.loss == pytest.approx(float(case.loss(call(case)).detach()))
    assert all(n.executed for n in graph.nodes)
    for n in graph.nodes:
        if n.kind != "leaf":
            assert n.grad_in and all(g is not None and g.norm is not None for g in n.grad_in), n.id
    addmm = {n.module for n in nodes_named(dbg, "AddmmBackward0")}
    assert addmm == {"layer1", "layer2"}
    assert graph.node("layer1/AddmmBackward0#0").grad_out  # what it produced, per next edge
    relu = nodes_named(dbg, "ReluBackward0")[0]
    assert relu.module is None  # F.relu in MLP.forward belongs to the root module ""
    leaf = graph.node("leaf:layer1.weight")
    expected = reference_grads(make("mlp"))["layer1.weight"]
    assert leaf.grad_norm == pytest.approx(float(expected.norm()), rel=1e-6)
    # a model this small gets every statistic at once, the gradients' too
    (received,) = leaf.grad_in
    assert received is not None and received.mean == pytest.approx(float(expected.mean()), rel=1e-5, abs=1e-7)
    assert received.max == pytest.approx(float(expected.max()), rel=1e-6)
    saved = graph.node("layer1/AddmmBackward0#0").saved["_saved_mat1"]
    assert isinstance(saved, TensorSummary) and saved.std is not None


def test_source_lines_point_at_the_forward_code() -> None:
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    addmm = dbg.graph.node("layer2/AddmmBackward0#0")
    assert addmm.source is not None and "run_zoo.py:" in addmm.source and "self.layer2" in addmm.source
    dbg_off = gs.debugger(case.model, inputs=case.inputs, loss=case.loss, source_lines=False)
    assert all(n.source is None for n in dbg_off.graph.nodes)


NOTEBOOK_CELL = """import torch
from torch import nn


class Cell(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.layer2(torch.relu(x))
"""


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        ("/tmp/ipykernel_4242/3141592653.py", "cell"),  # ipykernel's name for a Jupyter cell's code
        ("/tmp/marimo_4242/__marimo__cell_Hbol_.py", "cell Hbol"),  # marimo edit's compile of cell Hbol
        ("/tmp/marimo_4242/__marimo__cell_Hbol_Cell.py", "cell Hbol"),  # marimo's per-class stub of it
        ("/home/me/__marimo__cell.py", "__marimo__cell.py"),  # not marimo's pattern: the plain base name
    ],
)
def test_notebook_cells_read_as_cells_in_source_lines(
    filename: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what both kernels do: compile the cell's code under that name and put its text in linecache
    monkeypatch.setitem(linecache.cache, filename, (len(NOTEBOOK_CELL), None, NOTEBOOK_CELL.splitlines(True), filename))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(NOTEBOOK_CELL, filename, "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["Cell"]()
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda out: out.pow(2).sum())
    source = dbg.graph.node("layer2/AddmmBackward0#0").source
    assert source == f"{shown}:11  return self.layer2(torch.relu(x))", source


def test_a_run_reports_the_time_of_each_phase() -> None:
    from gradsight._capture.run import run
    from gradsight._capture.specs import spec_for_model

    case = make("mlp")
    result = run(spec_for_model(case.model, case.inputs, case.loss, None, 2**30, True))
    assert set(result.phases) == {"forward", "read graph", "hooks", "backward", "build"}
    assert all(0 < seconds < 60 for seconds in result.phases.values())


def test_runnable_runs_hook_no_accumulate_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.autograd.grad with respect to the leaves never runs their AccumulateGrad nodes
    from gradsight._capture.hooks import GradRecorder

    counts: list[int] = []
    close = GradRecorder.close

    def counting_close(self: GradRecorder) -> None:
        counts.append(len(self._handles))
        close(self)

    monkeypatch.setattr(GradRecorder, "close", counting_close)
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    ops = [n for n in dbg.graph.nodes if n.kind != "leaf"]
    kept_post_hooks = sum(1 for n in ops if n.grad_out)  # small graph: every op's gradients are kept
    assert counts == [len(ops) + kept_post_hooks]
    assert all(n.executed and n.grad_norm is not None for n in dbg.graph.nodes if n.kind == "leaf")


def test_a_model_on_the_meta_device_shows_its_whole_graph() -> None:
    # the graph of a model too big to allocate: shapes everywhere, no values, nothing fails
    model = MLP().to("meta")
    dbg = gs.debugger(model, inputs=torch.randn(4, 8, device="meta"), loss=lambda out: out.pow(2).mean())
    graph = dbg.graph
    assert not dbg.error and not graph.run.errors and graph.run.loss is None
    assert {n.id for n in graph.nodes if n.kind == "leaf"} == {f"leaf:{name}" for name, _ in model.named_parameters()}
    assert all(n.executed and n.grad_norm is None for n in graph.nodes)
    addmm = graph.node("layer1/AddmmBackward0#0")
    views = {v.key: v for v in dbg.inspect(addmm.id).tensors}
    saved = views["saved:_saved_mat1"]
    assert saved.summary.device == "meta" and saved.summary.shape == (4, 8) and saved.summary.note
    assert saved.histogram is None and saved.preview is None


class _WithLoss(nn.Module):
    """Returns what Hugging Face models return with labels: a mapping with `loss` and `logits`."""

    def __init__(self, as_tuple: bool = False) -> None:
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.as_tuple = as_tuple

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> Any:
        logits = self.head(x)
        loss = nn.functional.cross_entropy(logits, labels)
        return (loss, logits) if self.as_tuple else {"logits": logits, "loss": loss}


@pytest.mark.parametrize("as_tuple", [False, True])
def test_no_loss_and_a_model_that_returns_its_loss(as_tuple: bool) -> None:
    model = _WithLoss(as_tuple)
    x, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    dbg = gs.debugger(model, inputs=(x, labels))
    graph = dbg.graph
    expected = nn.functional.cross_entropy(model.head(x), labels)
    assert graph.run.root_gradient == "scalar" and graph.run.loss == pytest.approx(float(expected.detach()))
    assert [n.name for n in graph.nodes if n.kind == "root"] == ["NllLossBackward0"]
    assert any("loss output" in note and "loss=lambda" in note for note in graph.notes)
    (reference,) = torch.autograd.grad(expected, [model.head.weight])
    assert graph.node("leaf:head.weight").grad_norm == pytest.approx(float(reference.norm()), rel=1e-6)
    # an explicit grad_output still means "these outputs, with this gradient"
    v = [torch.tensor(1.0), torch.ones(5, 3)]  # in the order of the outputs
    with_v = gs.debugger(model, inputs=(x, labels), grad_output=v if as_tuple else v[::-1])
    assert not with_v.error and with_v.graph.run.root_gradient == "grad_output"
    # the logits feed the loss: an op of its graph, not a second root (roots are fed by no node)
    assert with_v.graph.roots == (graph.find("NllLossBackward0")[0].id,)
    assert with_v.graph.node(graph.find("AddmmBackward0")[0].id).kind == "op"


def test_no_loss_uses_ones_or_the_given_grad_output() -> None:
    model = MLP()
    x = torch.randn(3, 8)
    dbg = gs.debugger(model, inputs=x)
    assert dbg.graph.run.root_gradient == "ones"
    out = model(x)
    ones = torch.autograd.grad(out, model.layer1.weight, torch.ones_like(out), retain_graph=True)[0]
    assert torch.equal(received(dbg)["layer1.weight"], ones)
    v = torch.randn_like(out)
    dbg2 = gs.debugger(model, inputs=x, grad_output=v)
    assert dbg2.graph.run.root_gradient == "grad_output"
    expected = torch.autograd.grad(out, model.layer1.weight, v)[0]
    got = received(dbg2)["layer1.weight"]
    assert torch.equal(got, expected)


def test_function_debugger_names_modules_from_its_scope() -> None:
    model = MLP()
    x = torch.randn(2, 8)
    dbg = gs.debugger(lambda: model(x).pow(2).sum())
    names = sorted(n.leaf.name for n in dbg.graph.leaves if n.leaf and n.leaf.name)
    assert names == ["model.layer1.bias", "model.layer1.weight", "model.layer2.bias", "model.layer2.weight"]
    assert {n.module for n in nodes_named(dbg, "AddmmBackward0")} == {"model.layer1", "model.layer2"}


def test_a_bound_method_names_what_its_object_holds() -> None:
    class Trainer:
        def __init__(self) -> None:
            self.model = MLP()
            self.x = torch.randn(2, 8)

        def loss(self) -> torch.Tensor:
            return self.model(self.x).pow(2).sum()

    dbg = gs.debugger(Trainer().loss)
    names = sorted(n.leaf.name for n in dbg.graph.leaves if n.leaf and n.leaf.name)
    assert names == [f"self.model.layer{i}.{p}" for i in (1, 2) for p in ("bias", "weight")]
    assert {n.module for n in nodes_named(dbg, "AddmmBackward0")} == {"self.model.layer1", "self.model.layer2"}


class _Holder:
    def __init__(self) -> None:
        self.model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))


def test_a_function_reaching_its_model_through_an_object_or_a_dict() -> None:
    holder, x = _Holder(), torch.randn(8, 4)
    models = {"enc": nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))}
    deep = {"a": {"b": nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))}}  # two levels: not named
    seqs = [holder.model, models["enc"], deep["a"]["b"]]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in seqs]
    leaves = []
    for fn in (lambda: holder.model(x).sum(), lambda: models["enc"](x).sum(), lambda: deep["a"]["b"](x).sum()):
        dbg = gs.debugger(fn)
        assert dbg.status == "ready", dbg.error
        leaves.append(sorted(n.leaf.name or "?" for n in dbg.graph.leaves if n.leaf))
    assert leaves[0] == ["holder.model.0.bias", "holder.model.0.weight", "holder.model.1.bias", "holder.model.1.weight"]
    assert leaves[1][0] == "models['enc'].0.bias"
    for m, state in zip(seqs, before, strict=True):  # running statistics put back, named or not
        assert all(torch.equal(v, state[k]) for k, v in m.state_dict().items())


def test_a_graph_the_user_built_before_a_run_still_backwards() -> None:
    # BatchNorm saves its running statistics; restoring them must not move their version counters
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    x = torch.randn(8, 4)
    for mode in (model.train, model.eval):
        mode()
        pending = model(x).sum()
        gs.debugger(model, inputs=x, loss=lambda out: out.sum())
        pending.backward()  # raised "modified by an inplace operation" when buffers were copied back


def test_a_reentrant_checkpoint_run_touches_no_grad_and_fires_no_hook() -> None:
    case = make("reentrant_checkpoint")
    fired = []
    for p in case.model.parameters():
        p.grad = torch.full_like(p, 7.0)
        p.register_post_accumulate_grad_hook(lambda t: fired.append(t))  # an optimizer in backward, say
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    assert dbg.status == "ready" and not fired
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in case.model.parameters())  # type: ignore[arg-type]
    call(case).sum().backward()  # the user's hooks are still in place
    assert len(fired) == len(list(case.model.parameters()))


def test_warnings_from_the_forward_point_at_the_users_line() -> None:
    class Warns(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.lin(x)
            return y + torch.tensor(y.sum())  # torch warns (from C++, every time): use clone().detach()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gs.debugger(Warns(), inputs=torch.randn(3, 4), loss=lambda out: out.sum())
    where = [(w.filename, w.lineno) for w in seen if "copy construct" in str(w.message)]
    assert where == [(__file__, Warns.forward.__code__.co_firstlineno + 2)]


class UsesWeightDirectly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + x @ self.fc.weight.t()  # the matmul runs in the root's forward, not in fc


def test_modules_of_an_observed_forward_are_exact_never_guessed() -> None:
    dbg = gs.debugger(UsesWeightDirectly(), inputs=torch.randn(2, 3))
    assert {n.module for n in nodes_named(dbg, "AddmmBackward0")} == {"fc"}
    # two TBackward0 consume fc.weight: F.linear's inside fc, and the .t() written in the root's forward
    assert sorted(str(n.module) for n in nodes_named(dbg, "TBackward0")) == ["None", "fc"]
    # a tensor debugger saw no forward: there the module is inferred from the parameters consumed
    model = UsesWeightDirectly()
    tensor_dbg = gs.debugger(model(torch.randn(2, 3)).sum(), params=model)
    assert [n.module for n in tensor_dbg.graph.nodes if n.name == "TBackward0"] == ["fc", "fc"]
    # wrappers whose forward only calls one submodule have the same range: the innermost one wins
    wrapped = nn.Sequential(nn.Sequential(nn.Linear(4, 1)))
    dbg = gs.debugger(wrapped, inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    assert {n.module for n in nodes_named(dbg, "AddmmBackward0")} == {"0.0"}


def test_error_in_forward_is_shown_not_raised() -> None:
    model = MLP()
    dbg = gs.debugger(model, inputs=torch.randn(2, 5))  # wrong width
    assert dbg.status == "error"
    assert "RuntimeError" in dbg.error and "Traceback" in dbg.error


def test_error_in_backward_keeps_the_graph() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.sigmoid(self.lin(x))
            y.mul_(2)  # modifies a tensor sigmoid saved: backward fails
            return y.sum()

    dbg = gs.debugger(Broken(), inputs=torch.randn(2, 3))
    assert dbg.status == "error"
    assert "modified by an inplace operation" in dbg.error
    assert dbg.graph.find("SigmoidBackward0")  # the graph, captured before backward, is shown


def test_internal_hook_error_never_reaches_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight._capture import hooks

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("gradsight bug")

    monkeypatch.setattr(hooks.GradRecorder, "_keep", broken)
    case = make("mlp")
    expected = reference_grads(case)
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    assert dbg.status == "ready"
    assert dbg.graph.run.errors and "gradsight bug" in dbg.graph.run.errors[0]
    got = received(dbg)
    assert all(torch.equal(got[k], v) for k, v in expected.items())


def test_memory_budget_degrades_to_summaries() -> None:
    case = make("conv_bn")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss, memory_budget=2000)
    run = dbg.graph.run
    assert run.dropped > 0 and run.kept_bytes <= 2000 and run.budget_bytes == 2000
    conv = dbg.graph.find("ConvolutionBackward0")[0]
    views = {v.key: v for v in dbg.inspect(conv.id).tensors}
    assert not views["saved:_saved_input"].kept
    assert views["saved:_saved_input"].summary.norm is not None  # statistics survive without the tensor
    assert views["saved:_saved_input"].preview is None


def test_global_memory_budget_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "memory_budget", 0)
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    assert dbg.graph.run.budget_bytes == 0 and dbg.graph.run.kept_bytes == 0


def test_an_integer_loss_is_explained() -> None:
    dbg = gs.debugger(MLP(), inputs=torch.randn(2, 8), loss=lambda out: out.argmax(1).sum())
    assert dbg.graph.message is not None and "int64 tensor" in dbg.graph.message and "argmax" in dbg.graph.message


def test_frozen_model_is_explained() -> None:
    model = MLP().requires_grad_(False)
    dbg = gs.debugger(model, inputs=torch.randn(2, 8), loss=lambda out: out.sum())
    assert dbg.graph.message is not None and "requires_grad=False" in dbg.graph.message


def test_big_graphs_keep_norms_and_rerun_to_show_an_inspected_nodes_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)  # as if the graph were big
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    node = dbg.graph.node("layer2/AddmmBackward0#0")
    assert node.grad_in[0] is not None and node.grad_in[0].norm is not None  # norms of every gradient
    assert dbg._captured.store.get((dbg._captured.index_of[node.id], "grad-in:0")) is None
    assert dbg.graph.run.kept_bytes < 10_000  # nothing big kept: only what autograd.grad returned for leaves
    views = {v.key: v for v in dbg.inspect(node.id).tensors}
    assert views["grad-in:0"].kept and views["grad-out:0"].kept  # the step was re-run to keep them
    assert views["saved:_saved_mat1"].kept and views["saved:_saved_mat1"].preview is not None
    assert views["grad-in:0"].summary.norm == pytest.approx(node.grad_in[0].norm, rel=1e-6)
    assert dbg.graph.node(node.id).grad_in[0].norm == node.grad_in[0].norm  # same step, same numbers


def test_no_rerun_after_the_model_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    with torch.no_grad():
        case.model.layer1.weight.add_(1.0)  # an optimizer step, say
    views = {v.key: v for v in dbg.inspect("layer2/AddmmBackward0#0").tensors}
    assert not views["grad-in:0"].kept
    assert "parameters changed" in (views["grad-in:0"].note or "")


def test_no_rerun_is_shown_as_the_run_when_it_does_not_reproduce_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)
    case = make("mlp")
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    shown = dbg.graph
    with torch.no_grad():
        case.inputs.add_(100.0)  # the user's batch, changed in place since the run
    views = {v.key: v for v in dbg.inspect("layer2/AddmmBackward0#0").tensors}
    assert not views["grad-in:0"].kept
    assert "did not reproduce this run (loss" in (views["grad-in:0"].note or "")
    assert dbg.graph is shown and dbg.graph.run.loss == shown.run.loss  # the run shown stays the run shown


def test_a_debugger_called_under_no_grad_says_so() -> None:
    with torch.no_grad():
        dbg = gs.debugger(MLP(), inputs=torch.randn(2, 8), loss=lambda out: out.sum())
    assert dbg.graph.run.mode == "runnable"
    assert dbg.graph.message is not None and "called inside torch.no_grad()" in dbg.graph.message


def test_why_after_a_backward_that_raised() -> None:
    model = MLP()
    model.layer2.weight.register_hook(lambda g: (_ for _ in ()).throw(ValueError("bug in my hook")))
    dbg = gs.debugger(model, inputs=torch.randn(2, 8), loss=lambda out: out.sum())
    assert dbg.status == "error"
    why = dbg.why("layer1.weight")
    assert "backward raised before reaching it (ValueError: bug in my hook)" in why.message
    assert any("bug in my hook" in w.message for w in dbg.graph.missing)


def test_a_model_another_thread_trains_during_a_run_keeps_its_statistics() -> None:
    import threading

    worker_model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    inside, done = threading.Event(), threading.Event()

    class Waits(nn.Module):  # this run's forward waits while the other thread trains its model
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            inside.set()
            assert done.wait(10)
            return self.lin(x)

    def train() -> None:
        assert inside.wait(10)
        for _ in range(3):
            worker_model(torch.randn(8, 4))
        done.set()

    worker = threading.Thread(target=train)
    worker.start()
    gs.debugger(Waits(), inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    worker.join(10)
    assert int(worker_model[1].num_batches_tracked) == 3  # not "restored" to 0 by the run's guard


def test_a_reentrant_checkpoint_leaves_a_free_tensors_grad_alone() -> None:
    from torch.utils.checkpoint import checkpoint

    lin = nn.Linear(3, 3)
    w = torch.randn(3, 3, requires_grad=True)  # used inside the region, reached through its function

    def region(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(h @ w)

    dbg = gs.debugger(lambda: checkpoint(region, lin(torch.randn(2, 3)), use_reentrant=True).sum())
    assert dbg.status == "ready" and w.grad is None and lin.weight.grad is None


def test_lazy_modules_must_be_initialized_first() -> None:
    model = nn.Sequential(nn.LazyLinear(3), nn.LazyBatchNorm1d())
    with pytest.raises(ValueError, match="run one forward first"):
        gs.debugger(model, inputs=torch.randn(4, 2), loss=lambda out: out.sum())
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)  # left as it was


def test_the_guard_puts_back_shared_and_resized_buffers() -> None:
    from gradsight._capture.guard import ModuleGuard

    shared = torch.zeros(1)
    a, b = nn.Module(), nn.Module()
    a.register_buffer("steps", shared)
    b.register_buffer("steps", shared)
    seen = nn.Module()
    seen.register_buffer("rows", torch.zeros(2, 3))
    with ModuleGuard([("a", a), ("b", b), ("seen", seen)]):
        shared += 1  # a parent edits a buffer it shares with a child before the child runs
        seen.rows.data = torch.ones(4, 3)  # a forward that grows a buffer
    assert float(shared) == 0.0 and seen.rows.shape == (2, 3) and not seen.rows.any()


def test_a_grad_output_made_under_inference_mode() -> None:
    with torch.inference_mode():
        g = torch.ones(4, 2)
    dbg = gs.debugger(nn.Linear(3, 2), inputs=torch.randn(4, 3), grad_output=g)
    assert not dbg.graph.run.errors and dbg.graph.nodes[0].grad_in[0] is not None
    assert dbg.graph.nodes[0].grad_in[0].norm == pytest.approx(float(torch.ones(4, 2).norm()))


def test_a_tied_renormalized_embedding_does_not_count_as_a_changed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4, max_norm=1.0)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(idx) * 3.0)

    dbg = gs.debugger(Tied(), inputs=torch.tensor([1, 2, 7]), loss=lambda out: out.pow(2).mean())
    views = {v.key: v for v in dbg.inspect(dbg.graph.find("MmBackward0")[0].id).tensors}
    assert views["grad-in:0"].kept  # re-run to keep it: not refused as "parameters changed"


@pytest.mark.parametrize("clear", ["opt", "opt_in_place", "model", "none"])
def test_a_function_that_runs_backward_itself_is_stopped_before_it_trains(clear: str) -> None:
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    x = torch.randn(4, 8)
    if clear != "none":  # the user is mid gradient accumulation: .grad holds what earlier batches gave
        model(x).pow(2).sum().backward()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    grads = {k: v.grad for k, v in model.named_parameters()}
    grad_values = {k: None if g is None else g.clone() for k, g in grads.items()}

    def train_step() -> torch.Tensor:
        if clear == "opt":
            opt.zero_grad()
        elif clear == "opt_in_place":
            opt.zero_grad(set_to_none=False)
        elif clear == "model":
            model.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        opt.step()
        return loss

    dbg = gs.debugger(train_step)
    assert dbg.status == "error" and "called backward() itself" in dbg.error and "Nothing was changed" in dbg.error
    for k, v in model.named_parameters():  # zero_grad ran before the refused backward: its .grad given back
        assert torch.equal(v, before[k]) and v.grad is grads[k]
        assert (v.grad is None) == (clear == "none")
        assert v.grad is None or torch.equal(v.grad, grad_values[k])
    opt.zero_grad()  # zero_grad is torch's again
    assert all(v.grad is None for v in model.parameters())


def test_a_run_through_a_graph_the_user_built_earlier_leaves_it_usable() -> None:
    enc, head = nn.Linear(4, 4), nn.Linear(4, 1)
    feats = torch.tanh(enc(torch.randn(3, 4)))  # the user's graph, built before the run
    dbg = gs.debugger(lambda: head(feats).sum())
    assert dbg.status == "ready"
    head(feats).sum().backward()  # raised "backward through the graph a second time"
    assert enc.weight.grad is not None


def test_module_warning_filters_still_apply_in_a_run() -> None:
    class Warns(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            warnings.warn("noisy", UserWarning, stacklevel=1)
            return x * 2

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", module=__name__)
        gs.debugger(Warns(), inputs=torch.randn(2, requires_grad=True), loss=lambda out: out.sum())
    assert not [w for w in seen if "noisy" in str(w.message)]


def test_a_run_leaves_the_grad_of_a_tensor_that_retains_it_alone() -> None:
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 2)
    feats = emb(torch.tensor([1, 2, 3]))  # a non-leaf the user retains for a saliency map
    feats.retain_grad()
    gs.debugger(head, inputs=feats, loss=lambda out: out.sum())
    assert feats.grad is None
    extra = {"x": feats}
    gs.debugger(lambda: head(extra["x"]).sum())
    assert feats.grad is None
    head(feats).sum().backward(retain_graph=True)  # the user's own backward still fills it
    mine = feats.grad
    assert mine is not None and torch.equal(mine, head.weight.sum(0).expand(3, 4))
    before = mine.clone()
    dbg = gs.debugger(lambda: (head(feats) * 2).sum())
    assert dbg.status == "ready" and feats.grad is mine and torch.equal(mine, before)


def test_a_modules_own_generators_are_as_before_after_a_run() -> None:
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.gen = torch.Generator().manual_seed(123)
            self.np_gen = np.random.default_rng(7)
            self.np_state = np.random.RandomState(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(x.shape, generator=self.gen) + float(self.np_gen.normal() + self.np_state.normal())
            return self.lin(x + 0.1 * noise)

    model, x = Noisy(), torch.randn(5, 4)
    states = (model.gen.get_state(), model.np_gen.bit_generator.state, model.np_state.get_state()[1].copy())
    first = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    assert torch.equal(model.gen.get_state(), states[0])
    assert model.np_gen.bit_generator.state == states[1]
    assert np.array_equal(model.np_state.get_state()[1], states[2])
    again = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())  # the same noise: comparable runs
    assert first.graph.node("leaf:lin.weight").grad_norm == again.graph.node("leaf:lin.weight").grad_norm


def test_a_forward_that_edits_a_parameter_in_place_is_told() -> None:
    class Constrained(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                self.lin.weight.clamp_(-0.2, 0.2)  # a constraint applied in the forward
            return self.lin(x)

    dbg = gs.debugger(Constrained(), inputs=torch.randn(5, 4), loss=lambda out: out.pow(2).sum())
    assert dbg.status == "ready"
    (note,) = [n for n in dbg.graph.notes if "in place" in n]
    assert "lin.weight" in note and "lin.bias" not in note
    plain = gs.debugger(MLP(), inputs=torch.randn(4, 8), loss=lambda out: out.sum())
    assert not [n for n in plain.graph.notes if "in place" in n]


def test_a_compiled_model_is_debugged_as_compiled_not_compiled_again() -> None:
    # the source tracker (a torch-function mode) made dynamo's mode-stack guard fail: the run
    # compiled the model again and showed that graph, its inputs in another order than the user's
    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2))
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(5, 4)
    plain = compiled(x).pow(2).mean().grad_fn
    while plain is not None and plain.name() != "CompiledFunctionBackward":
        plain = plain.next_functions[0][0]
    assert plain is not None
    expected = [None if n is None else tuple(n.variable.shape) for n, _ in plain.next_functions]
    counters.clear()
    for dbg in (
        gs.debugger(compiled, inputs=x, loss=lambda out: out.pow(2).mean()),
        gs.debugger(lambda: compiled(x).pow(2).mean()),
    ):
        assert dbg.status == "ready", dbg.error
        (node,) = dbg.graph.find("CompiledFunctionBackward")
        shapes = [None if n is None else dbg.graph.node(n).leaf.shape for n, _ in node.next]  # type: ignore[union-attr]
        assert shapes == expected
    assert counters["stats"]["unique_graphs"] == 0, dict(counters["stats"])


def test_parameters_inside_a_reentrant_checkpoint_are_not_listed_as_missing() -> None:
    from torch.utils.checkpoint import checkpoint

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(5, 5), nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(checkpoint(self.a, x, use_reentrant=True))

    torch.manual_seed(0)
    model, x = M(), torch.randn(3, 5, requires_grad=True)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    assert dbg.status == "ready"
    assert not {w.name for w in dbg.graph.missing} & {"a.weight", "a.bias"}
    twin = copy.deepcopy(model)  # reentrant checkpoint refuses autograd.grad: a plain backward on a copy
    twin(x.detach().requires_grad_()).pow(2).sum().backward()
    expected = twin.a.weight.grad
    assert expected is not None and model.a.weight.grad is None
    answer = dbg.why("a.weight")
    assert "inside a reentrant checkpoint" in answer.message
    assert f"{float(expected.norm()):.4g}" in answer.message


def test_a_run_leaves_no_reference_cycle_holding_its_tensors() -> None:
    # the source tracker held the run's frame (its barrier), the frame the tracker: every run's
    # output and graph lived on until the cyclic collector ran, and slowed the next backward
    import gc
    import weakref

    outputs: list[weakref.ref[torch.Tensor]] = []

    class Remembers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.lin(x).tanh()
            outputs.append(weakref.ref(out))
            return out

    model, x = Remembers(), torch.randn(2, 4)
    gc.collect()
    gc.disable()
    try:
        dbg = gs.debugger(model, inputs=x, loss=lambda out: out.sum())
        assert dbg.status == "ready"
        assert outputs and outputs[0]() is None
    finally:
        gc.enable()


def test_runs_overlapping_on_two_threads_leave_backward_and_zero_grad_as_they_were() -> None:
    # each run put back what it found: A in, B in, A out, B out left A's patches for good, and the
    # user's own backward then raised "called backward() itself"
    import threading

    real = (torch.autograd.backward, torch.optim.Optimizer.zero_grad, nn.Module.zero_grad)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    model, x = nn.Linear(3, 1), torch.randn(2, 3)

    def fn_a() -> torch.Tensor:
        a_in.set()
        assert b_in.wait(10)
        return model(x).sum()

    def fn_b() -> torch.Tensor:
        b_in.set()
        assert a_out.wait(10)
        return model(x).sum()

    def other() -> None:
        assert a_in.wait(10)
        gs.debugger(fn_b)

    thread = threading.Thread(target=other)
    thread.start()
    gs.debugger(fn_a)
    a_out.set()
    thread.join(10)
    assert (torch.autograd.backward, torch.optim.Optimizer.zero_grad, nn.Module.zero_grad) == real
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    model(x).sum().backward()
    assert model.weight.grad is not None


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")  # checkpoint, in the no_grad re-run
def test_a_rerun_without_a_graph_does_not_keep_the_last_runs_checkpoint_gradients() -> None:
    from torch.utils.checkpoint import checkpoint

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre, self.blk = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return checkpoint(self.blk, self.pre(x), use_reentrant=True).sum()

    torch.manual_seed(0)
    dbg = gs.debugger(M(), inputs=torch.randn(2, 4))
    assert "inside a reentrant checkpoint" in dbg.why("blk.weight").message
    graph = dbg.rerun(no_grad=True)
    assert "blk.weight" in {w.name for w in graph.missing}
    assert dbg.why("blk.weight").reason == "no_grad"


def test_an_optimizer_with_its_own_zero_grad_does_not_lose_the_users_gradients() -> None:
    class FusedLike(torch.optim.SGD):  # apex's FusedAdam zeroes in place and never calls super()
        def zero_grad(self, set_to_none: bool = False) -> None:
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.zero_()

    model, x = nn.Linear(3, 1), torch.randn(4, 3)
    model(x).sum().backward()
    before = model.weight.grad.clone()
    opt = FusedLike(model.parameters(), lr=0.1)

    def train_step() -> torch.Tensor:
        opt.zero_grad()
        loss = model(x).sum()
        loss.backward()
        opt.step()
        return loss

    dbg = gs.debugger(train_step)
    assert dbg.status == "error" and torch.equal(model.weight.grad, before)
    assert "zero_grad" in FusedLike.__dict__ and FusedLike.zero_grad.__qualname__.endswith("FusedLike.zero_grad")
