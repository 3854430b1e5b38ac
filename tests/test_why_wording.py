"""What ``graph.missing`` and ``why()`` say: about a tensor, not one of its names; a cell's own
leaves traced to the line that cut them (no_grad, detach, the re-run's own toggles) rather than
sent to a runnable debugger; results computed under no_grad worded as precisely as inference_mode;
a cell without backward calls no parameter missing."""

from __future__ import annotations

from typing import Any

import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def missing(graph: gs.Graph) -> dict[str, str]:
    return {w.name: w.message for w in graph.missing}


# -- one tensor, two names -------------------------------------------------------------------------


def test_a_module_under_two_names_is_one_tensor_with_its_gradient(shell: InteractiveShell) -> None:
    dbg = run(
        shell,
        "L = nn.Linear(5, 10)\nA = nn.Sequential(L, nn.Linear(10, 1))\n"
        "loss = A(torch.randn(3, 5)).sum()\nloss.backward()",
    )
    assert shell.user_ns["A"][0].weight.grad is not None
    assert not dbg.graph.missing  # A.0.weight is L.weight, which got its gradient
    answer = dbg.why("A.0.weight")
    assert answer.name == "A.0.weight" and answer.where == "leaf:L.weight"
    assert "same tensor as L.weight" in answer.message and "got a gradient" in answer.message
    assert "yet it got no gradient" not in answer.message
    controls = {c.name: c for c in dbg.graph.controls.leaves}
    assert controls["A.0.weight"].in_graph  # the same leaf as L.weight, drawn under that name


def test_a_for_loops_variable_is_the_module_it_was_left_on(shell: InteractiveShell) -> None:
    dbg = run(
        shell,
        "model = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))\nfor module in model.modules():\n    pass\n"
        "loss = model(torch.randn(2, 4)).sum()\nloss.backward()",
    )
    assert not dbg.graph.missing
    answer = dbg.why("module.weight")
    assert "same tensor as model.1.weight" in answer.message and answer.reason != "not_on_path"


def test_a_tensor_under_two_names_outside_the_graph_is_missing_once(shell: InteractiveShell) -> None:
    dbg = run(
        shell,
        "L = nn.Linear(2, 2)\nA = nn.Sequential(L)\nB = nn.Linear(2, 1)\nloss = B(torch.randn(3, 2)).sum()\n"
        "loss.backward()",
    )
    names = sorted(missing(dbg.graph))
    assert names == ["A.0.bias", "A.0.weight"]  # L.weight is A.0.weight: listed once
    assert dbg.why("L.weight").reason == dbg.why("A.0.weight").reason == "unused"


# -- no_grad as precise as inference_mode ---------------------------------------------------------------


def test_a_result_computed_under_no_grad_says_so(shell: InteractiveShell) -> None:
    body = "a = torch.ones(2, 3, requires_grad=True)\nb = torch.ones(2, 3, requires_grad=True)\n"
    dbg = run(shell, body + "with torch.no_grad():\n    c = a + b")
    message = dbg.graph.message or ""
    assert "c has requires_grad=False because it was computed under torch.no_grad()" in message
    assert "`c = a + b` inside `with torch.no_grad():`" in message
    assert "none of the tensors it was computed from required grad" not in message
    assert dbg.why("c").reason == "no_grad"
    decorated = run(shell, "@torch.no_grad()\ndef add(x, y):\n    return x + y\n" + body + "c = add(a, b)")
    assert "it comes from add(), which the cell decorates with @torch.no_grad()" in (decorated.graph.message or "")
    detached = run(shell, "x = torch.randn(5, requires_grad=True)\ny = x.detach()")
    assert "y has requires_grad=False because it was detached (`y = x.detach()`)" in (detached.graph.message or "")
    # enable_grad inside the block turns it back on: no claim about what ran there
    on = run(shell, body + "with torch.no_grad():\n    with torch.enable_grad():\n        c = a * 2\n    d = a + b")
    assert on.graph.find("MulBackward0") and on.why("d").reason == "no_grad"
    assert "c has requires_grad=False" not in (on.graph.message or "") + "".join(on.graph.notes)


def test_each_leafs_missing_message_is_its_own(shell: InteractiveShell) -> None:
    body = "a = torch.ones(2, 3, requires_grad=True)\nb = torch.ones(2, 3, requires_grad=True)\n"
    dbg = run(shell, body + "with torch.no_grad():\n    c = a + b")
    said = missing(dbg.graph)
    assert set(said) == {"a", "b"}
    assert said["b"].startswith("b gets no gradient") and "a is a leaf tensor" not in said["b"]
    assert "a is a leaf tensor" not in said["a"] and "b is a leaf tensor" not in said["a"]
    answer = dbg.why("b")  # traced: the line that cut it
    assert answer.reason == "no_grad" and answer.source is not None and "c = a + b" in answer.source


# -- why() in a cell traces the leaves the cell makes --------------------------------------------------


def test_why_traces_a_leaf_the_cell_makes_to_the_line_that_cut_it(shell: InteractiveShell) -> None:
    head = "a = torch.ones(3, requires_grad=True)\nb = torch.ones(3, requires_grad=True)\n"
    tail = "loss = (t * b).sum()\nloss.backward()"
    nograd = run(shell, head + "with torch.no_grad():\n    t = a * 2\n" + tail)
    assert "ask why" in missing(nograd.graph)["a"]
    answer = nograd.why("a")
    assert answer.reason == "no_grad" and answer.source is not None and "t = a * 2" in answer.source
    assert "runnable debugger" not in answer.message
    detach = run(shell, head + "t = (a * 2).detach()\n" + tail)
    answer = detach.why("a")
    assert answer.reason == "detach" and answer.source is not None and "(a * 2).detach()" in answer.source
    assert shell.user_ns["a"].grad is None and shell.user_ns["b"].grad is not None  # why() ran nothing for real


def test_why_after_a_cells_detach_toggle_names_the_toggle(shell: InteractiveShell) -> None:
    dbg = run(
        shell,
        "input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)\n"
        "w = torch.ones(25, requires_grad=True)\nout1 = torch.sin(input1)\nout2 = 2 * out1 * w\n"
        "out4 = (out2 + 1).sum()\nout4.backward()",
    )
    before = shell.user_ns["input1"].grad.clone()
    graph = dbg.rerun(detach=["out1"])
    assert "detach toggle on out1" in missing(graph)["input1"]
    answer = dbg.why("input1")
    assert answer.reason == "detach" and "detach toggle" in answer.message and "out1" in answer.message
    assert "gradsight's what-if" in answer.message and "runnable debugger" not in answer.message
    assert torch.equal(shell.user_ns["input1"].grad, before)


def test_why_of_a_cell_tensor_that_does_not_require_grad(shell: InteractiveShell) -> None:
    dbg = run(shell, "a = torch.ones(3)\nb = torch.ones(3, requires_grad=True)\nloss = (a * b).sum()\nloss.backward()")
    assert "a" not in missing(dbg.graph)  # it never asked for a gradient
    answer = dbg.why("a")  # no KeyError
    assert answer.reason == "requires_grad_false"
    assert "a.requires_grad_()" in answer.message and "unfreeze" not in answer.message


def test_a_tensor_debuggers_missing_list_does_not_send_to_why_in_circles() -> None:
    w, unused = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    dbg = gs.debugger((w * 2).sum(), params={"w": w, "unused": unused})
    said = missing(dbg.graph)
    assert set(said) == {"unused"} and "ask why" not in said["unused"]
    assert "runnable debugger" in said["unused"] and "runnable debugger" in dbg.why("unused").message


# -- what-if toggles: the answer names them -------------------------------------------------------------


class LinBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.lin(x))


def test_why_of_a_leaf_before_a_module_under_a_no_grad_toggle_names_the_toggle() -> None:
    torch.manual_seed(0)
    dbg = gs.debugger(LinBN(), inputs=torch.randn(8, 4), loss=lambda o: o.pow(2).sum())
    graph = dbg.rerun(no_grad=["bn"])
    said = missing(graph)
    assert "no_grad toggle on bn" in said["lin.weight"] and "the output has requires_grad" not in said["lin.weight"]
    assert said["bn.weight"].startswith("bn.weight gets no gradient: this re-run's no_grad toggle runs module bn")
    answer = dbg.why("lin.weight")
    assert answer.reason == "no_grad" and "bn (BatchNorm1d)" in answer.message
    assert "no_grad toggle" in answer.message and "Set requires_grad=True on an input" not in answer.message


def test_why_after_a_modules_detach_toggle_blames_the_toggle_not_the_code() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    dbg = gs.debugger(model, inputs=torch.randn(8, 4), loss=lambda o: o.sum())
    dbg.rerun(detach=["1"])
    answer = dbg.why("0.weight")
    assert answer.reason == "detach" and "1 (Tanh)" in answer.message and "detach toggle" in answer.message
    assert "Remove the detach" not in answer.message


# -- a cell without backward -------------------------------------------------------------------------


def test_a_cell_without_backward_calls_no_other_parameter_missing(shell: InteractiveShell) -> None:
    shell.run_cell(
        "class Tiny(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.layer1 = nn.Linear(10, 5)\n        self.layer2 = nn.Linear(5, 2)\n"
        "    def forward(self, x):\n        return self.layer2(self.layer1(x))\nmodel = Tiny()",
        store_history=False,
    )
    dbg = run(shell, "w_slice = model.layer2.weight[0][:3]")
    assert not dbg.graph.missing
    assert "no backward ran in this cell" in dbg.why("model.layer2.weight").message
    nothing = run(shell, "g = model.layer2.weight.grad_fn")
    assert not nothing.graph.missing
    model = shell.user_ns["model"]
    tensor = gs.debugger(model.layer2(torch.randn(2, 5)).sum(), params=model)
    assert not tensor.graph.missing  # no backward: layer1 is not "missing" its gradient
