"""%load_ext gradsight and the %%gradsight cell magic, in a real IPython shell (no kernel)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight.graph import TensorSummary

SEED_SIN = """\
input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out3 = 2 * torch.sin(input1) + 1
"""

SEED_BACKWARD = """\
input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out1 = torch.sin(input1)
out2 = 2 * out1
out3 = out2 + 1
out4 = out3.sum()
out4.backward()
"""

TINY_MODEL = """\
class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(1000, 100)
        self.relu = nn.ReLU()
        self.layer2 = nn.Linear(100, 10)
    def forward(self, x):
        return self.layer2(self.relu(self.layer1(x)))
model = TinyModel()
"""


def run(sh: InteractiveShell, body: str) -> Any:
    result = sh.run_cell("%%gradsight\n" + body, store_history=False)
    return result.result


def test_seed_first_example(shell: InteractiveShell) -> None:
    dbg = run(shell, SEED_SIN)
    assert isinstance(dbg, gs.Debugger)
    graph = dbg.graph
    assert [n.name for n in graph.nodes] == ["AddBackward0", "MulBackward0", "SinBackward0", "AccumulateGrad"]
    sin = graph.find("SinBackward0")[0]
    saved = sin.saved["_saved_self"]
    assert isinstance(saved, TensorSummary) and saved.shape == (25,) and not saved.freed
    assert graph.leaves[0].leaf is not None and graph.leaves[0].leaf.name == "input1"
    assert graph.nodes[0].variable == "out3"
    assert torch.is_tensor(shell.user_ns["out3"])  # the cell ran in the user's namespace


def test_backward_in_the_cell_keeps_saved_values_marked_freed(shell: InteractiveShell) -> None:
    dbg = run(shell, SEED_BACKWARD)
    graph = dbg.graph
    assert graph.roots == (graph.find("SumBackward0")[0].id,)  # out4 depends on out1..out3
    sin = graph.find("SinBackward0")[0]
    saved = sin.saved["_saved_self"]
    assert isinstance(saved, TensorSummary)
    assert saved.freed and saved.shape == (25,)
    # gradsight kept the tensor autograd freed: full statistics and values on inspection
    view = next(v for v in dbg.inspect(sin.id).tensors if v.key == "saved:_saved_self")
    assert view.kept and view.summary.freed
    assert view.summary.max == pytest.approx(2 * torch.pi, rel=1e-6)
    assert view.preview is not None and view.preview.shape == (25,)
    assert {n.variable for n in graph.nodes} >= {"out1", "out2", "out3", "out4"}
    leaf = graph.leaves[0].leaf
    assert leaf is not None and leaf.grad is not None and leaf.grad.shape == (25,)


def test_a_backward_in_the_cell_shows_the_gradients_through_every_node(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradsight._capture import spy

    watches: list[Any] = []
    init = spy._Watch.__init__

    def remember(self: Any, *args: Any) -> None:
        init(self, *args)
        watches.append(self)

    monkeypatch.setattr(spy._Watch, "__init__", remember)
    dbg = run(shell, SEED_BACKWARD)
    graph = dbg.graph
    assert all(n.executed for n in graph.nodes)
    # d(sum)/d(out3) = 1, d(out3)/d(out2) = 1, d(out2)/d(out1) = 2, d(out1)/d(input1) = cos(input1)
    ones = float(torch.ones(25).norm())
    assert graph.find("SumBackward0")[0].grad_norm == pytest.approx(1.0)
    assert graph.find("AddBackward0")[0].grad_norm == pytest.approx(ones)
    assert graph.find("SinBackward0")[0].grad_norm == pytest.approx(2 * ones)
    input1 = shell.user_ns["input1"]
    assert graph.leaves[0].grad_norm == pytest.approx(float(input1.grad.norm()), rel=1e-6)
    # the gradient into a node is kept for the inspector (small graph)
    sin = graph.find("SinBackward0")[0]
    view = next(v for v in dbg.inspect(sin.id).tensors if v.key == "grad-in:0")
    assert view.kept and view.summary.max == pytest.approx(2.0) and view.histogram is not None
    # the one reaching AccumulateGrad is not held (it would force a copy of .grad): the note says where to look
    leaf_views = {v.key: v for v in dbg.inspect(graph.leaves[0].id).tensors}
    assert not leaf_views["grad-in:0"].kept and "AccumulateGrad" in (leaf_views["grad-in:0"].note or "")
    assert leaf_views["leaf:grad"].kept
    # the hooks went with the cell: a later backward through the same leaf records nothing
    recorded = [dict(w.metas) for w in watches]
    (2 * input1).sum().backward()
    assert [dict(w.metas) for w in watches] == recorded


def test_a_custom_function_in_a_cell_keeps_what_its_ctx_saved(shell: InteractiveShell) -> None:
    shell.run_cell("from tests.zoo import Scale", store_history=False)
    dbg = run(shell, "a = torch.randn(5, requires_grad=True)\nout = Scale.apply(a, 3.0).sum()\nout.backward()")
    node = dbg.graph.find("ScaleBackward")[0]
    saved = node.saved["saved_tensors[0]"]  # read before backward freed it
    assert isinstance(saved, TensorSummary) and saved.freed and saved.shape == (5,)
    assert "saved_tensors" not in node.saved and node.saved["k"] == 3.0
    assert not dbg.graph.notes  # nothing reported as freed


def test_autograd_grad_in_the_cell_gives_the_leaves_their_gradient(shell: InteractiveShell) -> None:
    dbg = run(
        shell, "w = torch.randn(4, requires_grad=True)\nloss = (3 * w).sum()\n(g,) = torch.autograd.grad(loss, [w])"
    )
    leaf = dbg.graph.node("leaf:w")
    assert leaf.executed and leaf.grad_norm == pytest.approx(float(shell.user_ns["g"].norm()))


def test_a_cell_without_backward_shows_no_gradients(shell: InteractiveShell) -> None:
    graph = run(shell, SEED_SIN).graph
    assert all(n.executed is None and n.grad_norm is None for n in graph.nodes)


def test_autograd_functions_are_restored_after_the_cell(shell: InteractiveShell) -> None:
    backward, grad = torch.autograd.backward, torch.autograd.grad
    run(shell, SEED_BACKWARD)
    assert torch.autograd.backward is backward and torch.autograd.grad is grad


def test_model_parameters_are_named_after_the_variable(shell: InteractiveShell) -> None:
    shell.run_cell(TINY_MODEL, store_history=False)
    dbg = run(
        shell,
        "batch = torch.randn(16, 1000)\nexpected = torch.randn(16, 10)\n"
        "loss = (expected - model(batch)).pow(2).sum()\nloss.backward()\n",
    )
    names = sorted(n.leaf.name for n in dbg.graph.leaves if n.leaf and n.leaf.name)
    assert names == ["model.layer1.bias", "model.layer1.weight", "model.layer2.bias", "model.layer2.weight"]
    assert shell.user_ns["model"].layer1.weight.grad is not None  # the user's backward really ran


def test_last_expression_is_a_root(shell: InteractiveShell) -> None:
    dbg = run(shell, "x = torch.ones(3, requires_grad=True)\n(x * 2).sum()")
    assert dbg.graph.nodes[0].name == "SumBackward0"
    assert dbg.graph.nodes[0].variable == "the cell's last value"


def test_no_grad_cell_is_explained(shell: InteractiveShell) -> None:
    dbg = run(shell, "a = torch.ones(2, 3, requires_grad=True)\nwith torch.no_grad():\n    c = a + a\n")
    assert len(dbg.graph) == 0
    assert dbg.graph.message is not None and "c has requires_grad=False" in dbg.graph.message


def test_cell_without_tensors_is_explained(shell: InteractiveShell) -> None:
    dbg = run(shell, "n = 3\n")
    assert "bound no tensors" in (dbg.graph.message or "")


def test_error_in_the_cell_shows_graph_so_far_and_fails_the_cell(
    shell: InteractiveShell, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", shown.append)
    body = "x = torch.ones(3, requires_grad=True)\ny = (x * 2).sum()\nraise ValueError('boom')\n"
    result = shell.run_cell("%%gradsight\n" + body, store_history=False)
    assert not result.success and isinstance(result.error_in_exec, ValueError)  # Run All stops here
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # no colours
    assert "ValueError: boom" in out and "raise ValueError('boom')" in out and "magic.py" not in out
    (dbg,) = shown
    assert dbg.graph.find("SumBackward0")
    assert any("boom" in n for n in dbg.graph.notes)


def test_unload_removes_exactly_what_load_added() -> None:
    sh = InteractiveShell.instance()
    try:
        sh.run_line_magic("load_ext", "gradsight")  # IPython loads %load_ext itself lazily, on first use
        sh.run_line_magic("unload_ext", "gradsight")
        before_cell = dict(sh.magics_manager.magics["cell"])
        before_line = dict(sh.magics_manager.magics["line"])
        sh.run_line_magic("load_ext", "gradsight")
        assert "gradsight" in sh.magics_manager.magics["cell"]
        sh.run_line_magic("unload_ext", "gradsight")
        assert sh.magics_manager.magics["cell"] == before_cell
        assert sh.magics_manager.magics["line"] == before_line
        assert not hasattr(sh.magics_manager.user_magics, "gradsight")
    finally:
        InteractiveShell.clear_instance()


def test_magic_takes_no_arguments(shell: InteractiveShell) -> None:
    result = shell.run_cell("%%gradsight --fast\nx = 1\n", store_history=False)
    assert isinstance(result.error_in_exec, ValueError)


def test_cell_rerun_with_a_toggle_keeps_the_users_tensors(shell: InteractiveShell) -> None:
    dbg = run(shell, SEED_SIN)
    original = shell.user_ns["input1"]
    graph = dbg.rerun(requires_grad={"input1": False})
    assert len(graph) == 0 and graph.message is not None
    assert shell.user_ns["input1"] is original and original.requires_grad  # nothing of the user's changed
    again = dbg.rerun()
    assert [n.name for n in again.nodes] == [n.name for n in dbg._runs.get(0).graph.nodes]


def test_cell_rerun_flips_existing_tensors_and_restores_them(shell: InteractiveShell) -> None:
    shell.run_cell("a = torch.ones(2, 3, requires_grad=True)\nb = torch.ones(2, 3, requires_grad=True)")
    dbg = run(shell, "c = a * b")
    assert sorted(n.leaf.name for n in dbg.graph.leaves if n.leaf) == ["a", "b"]
    graph = dbg.rerun(requires_grad={"a": False})
    assert [n.leaf.name for n in graph.leaves if n.leaf] == ["b"]
    assert shell.user_ns["a"].requires_grad and shell.user_ns["c"].grad_fn is not None
    assert {c.name for c in dbg.graph.controls.leaves} >= {"a", "b"}


def test_cell_rerun_detaches_a_variable(shell: InteractiveShell) -> None:
    dbg = run(
        shell,
        "input1 = torch.linspace(0., 1., 5, requires_grad=True)\nout1 = torch.sin(input1)\nout2 = out1 * 2 + input1",
    )
    assert dbg.graph.find("SinBackward0")
    graph = dbg.rerun(detach=["out1"])
    assert not graph.find("SinBackward0") and "leaf:input1" in graph


def test_cell_rerun_freezes_a_module_of_the_namespace(shell: InteractiveShell) -> None:
    shell.run_cell(TINY_MODEL, store_history=False)
    dbg = run(shell, "loss = model(torch.randn(2, 1000)).sum()")
    graph = dbg.rerun(requires_grad={"model.layer1": False})
    names = sorted(n.leaf.name for n in graph.leaves if n.leaf)
    assert names == ["model.layer2.bias", "model.layer2.weight"]
    assert all(p.requires_grad for p in shell.user_ns["model"].parameters())
    assert dbg.diff is not None and set(dbg.diff["lost_grad"]) == {"model.layer1.weight", "model.layer1.bias"}


def test_cell_rerun_puts_back_the_running_statistics_it_moved(shell: InteractiveShell) -> None:
    shell.run_cell("bn = nn.BatchNorm1d(3)\nx = torch.randn(8, 3, requires_grad=True)", store_history=False)
    dbg = run(shell, "y = bn(x).sum()")  # the user's own cell: its update of the statistics stays
    after_cell = shell.user_ns["bn"].running_mean.clone()
    dbg.rerun(requires_grad={"x": False})
    dbg.rerun()
    assert torch.equal(shell.user_ns["bn"].running_mean, after_cell)
    assert int(shell.user_ns["bn"].num_batches_tracked) == 1


def test_cell_rerun_error_keeps_the_graph(shell: InteractiveShell) -> None:
    shell.run_cell("flag = {'fail': False}")
    dbg = run(shell, "x = torch.ones(2, requires_grad=True)\nif flag['fail']:\n    raise ValueError('boom')\ny = x * 2")
    shell.user_ns["flag"]["fail"] = True
    with pytest.raises(gs.RerunError, match="boom"):
        dbg.rerun()
    assert dbg.status == "error" and dbg.graph.find("MulBackward0")


TRAINING_CELL = """\
opt.zero_grad()
loss = model(inp).pow(2).sum() + aux(inp).detach().sum()
loss.backward()
opt.step()
losses.append(loss.item())
"""


def test_cell_reruns_and_whys_leave_the_users_objects_as_they_were(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))\naux = nn.Linear(3, 1)\n"
        "inp = torch.randn(5, 3)\nopt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)\nlosses = []",
        store_history=False,
    )
    dbg = run(shell, TRAINING_CELL)
    ns = shell.user_ns
    before = {k: (v.detach().clone(), v.grad.clone()) for k, v in ns["model"].named_parameters()}
    momentum = {k: v["momentum_buffer"].clone() for k, v in ns["opt"].state_dict()["state"].items()}
    dbg.rerun()
    dbg.rerun(requires_grad={"model.0.weight": False})
    assert dbg.why("aux.weight").reason == "detach"  # traced by running the cell again
    for k, v in ns["model"].named_parameters():
        assert torch.equal(v, before[k][0]) and torch.equal(v.grad, before[k][1]) and v.requires_grad, k
    state = ns["opt"].state_dict()["state"]
    assert all(torch.equal(state[k]["momentum_buffer"], m) for k, m in momentum.items())
    assert len(ns["losses"]) == 1


def test_why_in_a_cell_without_backward_says_so(shell: InteractiveShell) -> None:
    shell.run_cell("x = torch.randn(3, requires_grad=True)", store_history=False)
    dbg = run(shell, "loss = (x * 2).sum()")
    assert "no backward ran in this cell" in dbg.why("x").message


def test_leaves_a_cell_creates_are_explained_too(shell: InteractiveShell) -> None:
    dbg = run(shell, "a = torch.randn(3, requires_grad=True)\nc = torch.randn(3, requires_grad=True)\n"
              "(b := torch.randn(3, requires_grad=True))\nloss = (a * c.detach()).sum() + b.relu().mul(0).sum()\n"
              "loss.backward()")  # fmt: skip
    assert sorted(m.name for m in dbg.graph.missing) == ["b", "c"]
    assert dbg.why("c").reason == "detach"  # no KeyError for a leaf the cell made; its .detach() named


def test_a_leaf_under_a_root_nobody_differentiated(shell: InteractiveShell) -> None:
    shell.run_cell(
        "p = torch.randn(3, requires_grad=True)\nq = torch.randn(3, requires_grad=True)", store_history=False
    )
    dbg = run(shell, "other = (q * 3).sum()\nloss = (p * 2).sum()\nloss.backward()")
    assert "only under roots that backward was not called on" in dbg.why("q").message


def test_cell_rerun_toggles_that_cannot_apply_say_why(shell: InteractiveShell) -> None:
    shell.run_cell("x = torch.randn(3, requires_grad=True)", store_history=False)
    dbg = run(shell, "h = x * 2\nloss = h.sum()\nloss.backward()")
    with pytest.raises(gs.ToggleError, match="computed in the cell"):
        dbg.rerun(requires_grad={"h": False})
    with pytest.raises(gs.RerunError, match="found no graph to differentiate"):
        dbg.rerun(no_grad=True)


def test_half_precision_and_sparse_gradients_in_a_cell(shell: InteractiveShell) -> None:
    shell.run_cell(
        "w = torch.ones(4096, dtype=torch.float16, requires_grad=True)\nemb = nn.Embedding(10, 3, sparse=True)",
        store_history=False,
    )
    dbg = run(shell, "loss = (w * torch.full((4096,), 2000.0, dtype=torch.float16)).float().sum()\n"
              "loss = loss + emb(torch.tensor([1, 2, 2])).sum()\nloss.backward()")  # fmt: skip
    w = dbg.graph.node("leaf:w")
    assert w.grad_norm == pytest.approx(128000.0) and not w.nonfinite_gradient  # 65504 is float16's max
    emb = dbg.graph.node("leaf:emb.weight")
    assert emb.grad_in[0] is not None and emb.grad_in[0].layout == "sparse_coo"
    assert emb.grad_norm == pytest.approx(float(shell.user_ns["emb"].weight.grad.to_dense().norm()), rel=1e-6)


def test_a_saved_weight_changed_by_an_optimizer_step_says_so(shell: InteractiveShell) -> None:
    shell.run_cell("w = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))\nopt = torch.optim.SGD([w], lr=1.0)")
    dbg = run(shell, "loss = (w ** 2).sum()\nloss.backward()\nopt.step()")
    node = dbg.graph.find("PowBackward0")[0]
    view = next(v for v in dbg.inspect(node.id).tensors if v.key == "saved:_saved_self")
    assert view.note is not None and "changed in place since autograd saved it" in view.note


def test_cell_reruns_put_back_what_objects_and_compiled_models_hold(shell: InteractiveShell) -> None:
    shell.run_cell(
        "class Trainer:\n    pass\ntr = Trainer()\ntr.model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))\n"
        "tr.opt = torch.optim.SGD(tr.model.parameters(), lr=0.5)\nlazy = nn.LazyLinear(2)\nx = torch.randn(8, 3)\n"
        "def train_step():\n    tr.opt.zero_grad()\n    loss = tr.model(x).pow(2).mean()\n    loss.backward()\n"
        "    tr.opt.step()\n    return loss\n",
        store_history=False,
    )
    dbg = run(shell, "loss = train_step()\ntr.model[0] = nn.Linear(3, 3)\nspare = lazy")  # a helper, a new layer
    ns = shell.user_ns
    first = ns["tr"].model[0]
    state = {k: v.clone() for k, v in ns["tr"].model.state_dict().items()}
    dbg.rerun()
    assert ns["tr"].model[0] is first
    assert all(torch.equal(v, state[k]) for k, v in ns["tr"].model.state_dict().items())


def test_why_in_a_cell_sees_the_users_code_not_gradsights_guards(shell: InteractiveShell) -> None:
    shell.run_cell(
        "model = nn.ModuleDict({'x': nn.Linear(3, 1), 'y': nn.Linear(3, 1)})\na = torch.randn(3)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)",
        store_history=False,
    )
    dbg = run(shell, "opt.zero_grad()\nloss = model['x'](a[None]).sum()\nloss.backward()\nopt.step()\nmodel.eval()")
    weights = shell.user_ns["model"]["x"].weight.detach().clone()
    assert dbg.why("model.y.weight").reason == "unused"  # the guards' snapshots once read as a detach
    assert torch.equal(shell.user_ns["model"]["x"].weight, weights)
    shell.run_cell("model.train()", store_history=False)
    dbg.rerun()
    assert shell.user_ns["model"].training  # the cell's model.eval() is put back too
