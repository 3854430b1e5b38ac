"""A ``%%gradsight`` cell that reaches a model through another name (``wrapped = Wrapper(model)``,
``cmodel = torch.compile(model)``, a helper function's global): its graph shows the model's leaves and
modules under their first name in the namespace (``model.0.weight``), and a re-run toggle by that name
reaches them — as does the path through the cell's own variable (``wrapped.inner.0.weight``), kept
under the graph's name. The controls the view draws its boxes from list the graph's names. A name the
graph shows that the re-run cannot reach is refused, never accepted to change nothing."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight.toggles import ToggleError, make_toggles

SETUP = """torch.manual_seed(0)
class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
    def forward(self, x):
        return self.inner(x)
model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
wrapped = Wrapper(model)
def helper(x):
    return model(x)
class Trainer:
    def __init__(self, m):
        self.m = m
    def loss(self, x):
        return self.m(x).sum()
trainer = Trainer(model)
x = torch.randn(3, 4)
"""


def cell(sh: InteractiveShell, body: str) -> Any:
    sh.run_cell(SETUP, store_history=False)
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def shown(graph: gs.Graph) -> tuple[set[str], set[str]]:
    """The leaf names and the module paths the graph draws."""
    leaves = {n.leaf.name for n in graph.leaves if n.leaf is not None and n.leaf.name}
    return leaves, {n.module for n in graph.nodes if n.module}


def lost(dbg: gs.Debugger) -> list[str]:
    assert dbg.diff is not None
    return sorted(dbg.diff["lost_grad"])


@pytest.mark.parametrize("call", ["wrapped(x)", "helper(x)"])
def test_the_controls_list_the_names_the_graph_shows(shell: InteractiveShell, call: str) -> None:
    dbg = cell(shell, f"loss = {call}.sum()\nloss.backward()")
    leaves, modules = shown(dbg.graph)
    assert leaves == {"model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"}
    controls = dbg.graph.controls
    weight = shell.user_ns["model"][0].weight
    grad = weight.grad.clone()
    dbg.rerun(requires_grad={"model.0.weight": False})
    assert lost(dbg) == ["model.0.weight"]  # accepted, and done
    assert weight.requires_grad and torch.equal(weight.grad, grad)  # the user's tensor given back as it was
    # the view draws a leaf's box and a module's shortcuts only for names its controls list
    assert leaves <= {c.name for c in controls.leaves} and modules <= set(controls.modules)
    assert all(c.in_graph for c in controls.leaves if c.name in leaves)


def test_the_cells_own_path_is_an_alias_kept_under_the_graphs_name(shell: InteractiveShell) -> None:
    dbg = cell(shell, "loss = wrapped(x).sum()\nloss.backward()")
    first = dbg.current
    graph = dbg.rerun(requires_grad={"wrapped.inner.0.weight": False})
    assert lost(dbg) == ["model.0.weight"] and graph.run.toggles["requires_grad"] == {"model.0.weight": False}
    graph = dbg.rerun(requires_grad={"wrapped.inner.2": False})
    assert lost(dbg) == ["model.2.bias", "model.2.weight"] and graph.run.toggles["requires_grad"] == {"model.2": False}
    for kind in ("no_grad", "detach"):  # a module by either path: the graph's name is the one kept
        dbg.current = first
        graph = dbg.rerun(**{kind: ["wrapped.inner.0"]})
        assert graph.run.toggles[kind] == ["model.0"] and lost(dbg) == ["model.0.bias", "model.0.weight"]
    dbg.current = first
    dbg.rerun(no_grad=["model.0"])
    assert lost(dbg) == ["model.0.bias", "model.0.weight"]
    with pytest.raises(ToggleError, match=r"'model\.0' and 'wrapped\.inner\.0' are one module"):
        dbg.rerun(requires_grad={"model.0": False, "wrapped.inner.0": True})


def test_a_compiled_models_leaves_and_modules_are_toggled_by_the_names_shown(shell: InteractiveShell) -> None:
    shell.run_cell(SETUP + "cmodel = torch.compile(model, backend='aot_eager')", store_history=False)
    dbg = shell.run_cell("%%gradsight\nloss = cmodel(x).sum()\nloss.backward()", store_history=False).result
    leaves, modules = shown(dbg.graph)
    assert "model.0.weight" in leaves and modules <= set(dbg.graph.controls.modules)
    assert leaves <= {c.name for c in dbg.graph.controls.leaves}
    first = dbg.current
    dbg.rerun(requires_grad={"model.0.weight": False})
    assert lost(dbg) == ["model.0.weight"]
    dbg.current = first
    graph = dbg.rerun(requires_grad={"cmodel.0": False})
    assert lost(dbg) == ["model.0.bias", "model.0.weight"] and graph.run.toggles["requires_grad"] == {"model.0": False}


def test_a_compiled_model_alone_is_named_as_the_user_wrote_it(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nx = torch.randn(3, 4)\n"
        "cmodel = torch.compile(nn.Sequential(nn.Linear(4, 1)), backend='aot_eager')",
        store_history=False,
    )
    dbg = shell.run_cell("%%gradsight\nloss = cmodel(x).sum()\nloss.backward()", store_history=False).result
    assert shown(dbg.graph)[0] == {"cmodel.0.weight", "cmodel.0.bias"}  # not cmodel._orig_mod.0.weight
    dbg.rerun(requires_grad={"cmodel.0.weight": False})
    assert lost(dbg) == ["cmodel.0.weight"]


def test_a_leaf_the_cell_reaches_by_no_name_it_uses_is_refused(shell: InteractiveShell) -> None:
    dbg = cell(shell, "loss = trainer.loss(x)\nloss.backward()")
    assert "model.0.weight" in shown(dbg.graph)[0]
    runs = len(dbg.history)
    with pytest.raises(ToggleError, match=r"'model\.0\.weight' is in the graph, but the cell reaches it through none"):
        dbg.rerun(requires_grad={"model.0.weight": False})
    assert len(dbg.history) == runs and dbg.status == "ready" and shell.user_ns["model"][0].weight.requires_grad


def test_a_module_alias_is_taken_by_every_kind_of_toggle() -> None:
    names: dict[str, Any] = {"leaves": ["model.0.weight"], "modules": ["model", "model.0"], "variables": ["h"],
                             "aliases": {"wrapped.inner": "model", "wrapped.inner.0": "model.0",
                                         "wrapped.inner.0.weight": "model.0.weight"}}  # fmt: skip
    toggles = make_toggles(requires_grad={"wrapped.inner.0.weight": False}, no_grad=["wrapped.inner.0"],
                           inference_mode=["wrapped.inner"], detach=["wrapped.inner.0", "h"], **names)  # fmt: skip
    assert toggles.requires_grad == {"model.0.weight": False}
    assert toggles.no_grad == ("model.0",) and toggles.inference_mode == ("model",)
    assert toggles.detach == ("model.0", "h")
    with pytest.raises(ToggleError, match=r"no module named 'wrapped\.inner\.0\.weight'"):
        make_toggles(no_grad=["wrapped.inner.0.weight"], **names)  # a leaf's alias is no module


def test_why_of_a_modules_other_name_says_it_is_a_module(shell: InteractiveShell) -> None:
    dbg = cell(shell, "loss = wrapped(x).sum()\nloss.backward()")
    assert dbg.why("wrapped.inner.0.weight").name == "wrapped.inner.0.weight"  # a leaf's alias is answered
    with pytest.raises(
        KeyError,
        match=r"'wrapped\.inner\.0' is a module \(the graph shows it as 'model\.0'\), not a "
        r"leaf: ask why\(\) of one of its parameters: 'model\.0\.bias', 'model\.0\.weight'",
    ):
        dbg.why("wrapped.inner.0")
