"""What-ifs of a %%gradsight cell that makes its own model: toggles reach the model the re-run
makes, why() follows its parameters, and apply=True keeps requires_grad changes."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def run(sh: InteractiveShell, body: str) -> Any:
    result = sh.run_cell("%%gradsight\n" + body, store_history=False)
    return result.result


def leaf_names(graph: gs.Graph) -> list[str]:
    return sorted(n.leaf.name for n in graph.leaves if n.leaf and n.leaf.name)


_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def snapshot(ns: dict[str, Any]) -> dict[str, Any]:
    """Everything of the user's tensors and modules a re-run could leave changed."""

    def tensor(t: torch.Tensor) -> tuple[Any, ...]:
        grad = t.grad.clone() if t.is_leaf and t.grad is not None else None
        hooks = tuple(dict(getattr(t, "_backward_hooks", None) or {}))
        return (id(t), t.detach().clone(), grad, t.requires_grad, hooks, t._version)

    out: dict[str, Any] = {}
    for name, value in ns.items():
        if name.startswith("_"):
            continue
        if isinstance(value, torch.nn.Module):
            for path, m in value.named_modules():
                out[f"{name}:{path}"] = (id(m), *(tuple(getattr(m, h)) for h in _MODULE_HOOKS))
            for path, p in value.named_parameters():
                out[f"{name}.{path}"] = tensor(p)
        elif isinstance(value, torch.Tensor):
            out[name] = tensor(value)
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def eq(x: Any, y: Any) -> bool:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
        if isinstance(x, tuple) and isinstance(y, tuple):
            return len(x) == len(y) and all(eq(u, v) for u, v in zip(x, y, strict=True))
        return bool(x == y)

    return a.keys() == b.keys() and all(eq(a[k], b[k]) for k in a)


MAKES_ITS_MODEL = """\
model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
loss = model(x).pow(2).sum()
loss.backward()
"""


@pytest.mark.parametrize(
    ("toggles", "leaves"),
    [
        ({"requires_grad": {"model.0": False}}, ["model.2.bias", "model.2.weight"]),
        ({"requires_grad": {"model.0.weight": False}}, ["model.0.bias", "model.2.bias", "model.2.weight"]),
        ({"requires_grad": {"model": False}}, []),
        ({"no_grad": ["model.0"]}, ["model.2.bias", "model.2.weight"]),
        ({"detach": ["model.1"]}, ["model.2.bias", "model.2.weight"]),
    ],
)
def test_module_toggles_reach_the_model_the_cell_makes(
    shell: InteractiveShell, toggles: dict[str, Any], leaves: list[str]
) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)
    dbg = run(shell, MAKES_ITS_MODEL)
    assert "model.0" in dbg.graph.controls.modules
    assert leaf_names(dbg.graph) == ["model.0.bias", "model.0.weight", "model.2.bias", "model.2.weight"]
    before = snapshot(shell.user_ns)
    if not leaves:  # nothing left that requires grad: the cell's backward() has no graph
        with pytest.raises(gs.RerunError, match="found no graph to differentiate"):
            dbg.rerun(**toggles)
    else:
        graph = dbg.rerun(**toggles)
        assert leaf_names(graph) == leaves
        assert dbg.diff is not None
        lost = {"model.0.bias", "model.0.weight", "model.2.bias", "model.2.weight"} - set(leaves)
        assert set(dbg.diff["lost_grad"]) == lost
        assert not any("did not reach" in n for n in graph.notes)
    assert same(snapshot(shell.user_ns), before)  # the user's model, x and loss as they were


def test_module_toggles_match_freezing_by_hand(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)
    dbg = run(shell, MAKES_ITS_MODEL)
    graph = dbg.rerun(requires_grad={"model.0": False})
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)  # the same weights
    by_hand = run(shell, MAKES_ITS_MODEL.replace("\nloss", "\nmodel[0].requires_grad_(False)\nloss", 1))
    assert [n.id for n in graph.nodes] == [n.id for n in by_hand.graph.nodes]
    assert [n.grad_norm for n in graph.nodes] == pytest.approx([n.grad_norm for n in by_hand.graph.nodes])


def test_toggles_follow_a_layer_the_cell_replaces(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)
    dbg = run(shell, "model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))\nmodel[0] = nn.Linear(3, 4)\n"
              "loss = model(x).sum()\nloss.backward()")  # fmt: skip
    before = snapshot(shell.user_ns)
    graph = dbg.rerun(no_grad=["model.0"], requires_grad={"model.1.bias": False})
    assert leaf_names(graph) == ["model.1.weight"]
    assert same(snapshot(shell.user_ns), before)


def test_a_module_variable_detached_detaches_its_output(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)\nw = torch.ones(1, requires_grad=True)")
    dbg = run(shell, "model = nn.Linear(3, 1)\nloss = (model(x) * w).sum()\nloss.backward()")
    graph = dbg.rerun(detach=["model"])  # was `model = model.detach()`: AttributeError on a module
    assert leaf_names(graph) == ["w"]


def test_toggles_that_miss_the_model_the_cell_makes_say_so(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)
    dbg = run(shell, "for model in [nn.Linear(3, 1)]:\n    pass\nloss = model(x).sum()\nloss.backward()")
    before = snapshot(shell.user_ns)
    graph = dbg.rerun(requires_grad={"model.weight": False})
    assert any("model.weight did not reach the model the cell made" in n for n in graph.notes)
    assert same(snapshot(shell.user_ns), before)


def test_why_follows_a_parameter_of_the_model_the_cell_makes(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)
    dbg = run(shell, "model = nn.ModuleDict({'a': nn.Linear(3, 1), 'b': nn.Linear(3, 1)})\n"
              "loss = model['a'](x).sum() + model['b'](x).detach().sum()\nloss.backward()")  # fmt: skip
    before = snapshot(shell.user_ns)
    why = dbg.why("model.b.weight")
    assert why.reason == "detach"
    line = ":3  loss = model['a'](x).sum() + model['b'](x).detach().sum()"
    assert why.source is not None and why.source.endswith(line)
    assert same(snapshot(shell.user_ns), before)
    dbg.rerun(no_grad=["model.b"])
    assert dbg.why("model.b.weight").reason == "no_grad"  # the toggle, on the model the cell makes


def test_why_of_a_parameter_the_cell_never_uses(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)", store_history=False)
    dbg = run(shell, "model = nn.ModuleDict({'a': nn.Linear(3, 1), 'b': nn.Linear(3, 1)})\n"
              "loss = model['a'](x).sum()\nloss.backward()")  # fmt: skip
    assert dbg.why("model.b.weight").reason == "unused"


def test_apply_keeps_requires_grad_changes_in_a_cell(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(3, requires_grad=True)\nmodel = nn.Linear(3, 1)")
    dbg = run(shell, "loss = model(x).sum()\nloss.backward()")
    ns = shell.user_ns
    dbg.rerun(requires_grad={"x": False, "model.bias": False})
    assert ns["x"].requires_grad and ns["model"].bias.requires_grad  # without apply: put back
    grads = {k: v.grad.clone() for k, v in ns["model"].named_parameters()}
    graph = dbg.rerun(requires_grad={"x": False, "model.bias": False}, apply=True)
    assert leaf_names(graph) == ["model.weight"]
    assert not ns["x"].requires_grad and not ns["model"].bias.requires_grad
    assert ns["model"].weight.requires_grad
    assert all(torch.equal(v.grad, grads[k]) for k, v in ns["model"].named_parameters())  # the rest put back


def test_apply_on_a_cell_rerun_that_raises_keeps_nothing(shell: InteractiveShell) -> None:
    # A failed run leaves the user's objects as they were (DESIGN §7): the frozen bias was kept.
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(3, requires_grad=True)\nmodel = nn.Linear(3, 1)")
    dbg = run(shell, "assert model.bias.requires_grad, 'bias frozen'\nloss = model(x).sum()\nloss.backward()")
    before = snapshot(shell.user_ns)
    with pytest.raises(gs.RerunError, match="bias frozen"):
        dbg.rerun(requires_grad={"x": False, "model.bias": False}, apply=True)
    assert shell.user_ns["model"].bias.requires_grad and shell.user_ns["x"].requires_grad
    assert same(snapshot(shell.user_ns), before) and len(dbg.history) == 1


def test_toggles_reach_a_layer_the_cell_puts_in_the_users_model(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nx = torch.randn(4, 3)\nnet = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))")
    dbg = run(shell, "net[1] = nn.Linear(4, 1)\nloss = net(x).sum()\nloss.backward()")
    before = snapshot(shell.user_ns)
    graph = dbg.rerun(requires_grad={"net.1": False})  # the layer the re-run puts in, not the user's
    assert leaf_names(graph) == ["net.0.bias", "net.0.weight"]
    graph = dbg.rerun(requires_grad={"net.1.weight": False, "net.0.bias": False})
    assert leaf_names(graph) == ["net.0.weight", "net.1.bias"]
    assert same(snapshot(shell.user_ns), before)
    assert dbg.why("net.0.weight").reason != "unused"
