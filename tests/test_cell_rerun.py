"""What a ``%%gradsight`` cell's re-run leaves of the user's objects (namespace_guard.NamespaceGuard)."""

from __future__ import annotations

import torch
from IPython.core.interactiveshell import InteractiveShell


def test_a_rerun_of_a_cell_that_registers_hooks_leaves_the_hooks_as_they_were(shell: InteractiveShell) -> None:
    # the seed notebook's backward-hook example: every re-run registered the hooks again
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))\n"
        "calls = []\ndef print_hook(module, _inputs, _outputs):\n    calls.append(type(module).__name__)\n"
        "x = torch.rand(20, 4, requires_grad=True)\nseen = []",
        store_history=False,
    )
    dbg = shell.run_cell(
        "%%gradsight\nfor module in model.modules():\n    if isinstance(module, nn.Linear):\n"
        "        module.register_full_backward_hook(print_hook)\n"
        "        module.register_forward_pre_hook(lambda m, a: None)\n"
        "x.register_hook(seen.append)\nmodel[0].weight.register_post_accumulate_grad_hook(seen.append)\n"
        "loss = model(x).sum()\nloss.backward()",
        store_history=False,
    ).result
    model, x = shell.user_ns["model"], shell.user_ns["x"]

    def hooks() -> list[int]:
        per_module = [len(getattr(m, a)) for m in model for a in ("_backward_hooks", "_forward_pre_hooks")]
        return [*per_module, len(x._backward_hooks), len(model[0].weight._post_accumulate_grad_hooks)]

    after_cell = hooks()
    assert after_cell == [1, 1, 1, 1, 1, 1]
    dbg.rerun()
    dbg.rerun(requires_grad={"model.1": False})
    assert hooks() == after_cell
    shell.user_ns["calls"].clear()
    shell.user_ns["seen"].clear()
    model(x).sum().backward()
    assert shell.user_ns["calls"] == ["Linear", "Linear"] and len(shell.user_ns["seen"]) == 2


def test_a_leaf_the_cell_makes_keeps_its_control_once_a_rerun_toggled_it_off(shell: InteractiveShell) -> None:
    # the view draws the box that turns a toggle back on from controls.leaves
    dbg = shell.run_cell(
        "%%gradsight\ninput1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)\n"
        "batch = torch.ones(25)\nout3 = 2 * torch.sin(input1) * batch + 1",
        store_history=False,
    ).result
    first = {c.name: (c.requires_grad, c.in_graph) for c in dbg.graph.controls.leaves}
    assert first["input1"] == (True, True)
    graph = dbg.rerun(requires_grad={"input1": False})
    assert not [n for n in graph.leaves if n.leaf is not None and n.leaf.name == "input1"]
    controls = {c.name: (c.requires_grad, c.in_graph, c.dtype) for c in graph.controls.leaves}
    assert controls["input1"] == (True, False, "float32")  # as the user's tensor has it
    assert controls["batch"] == (False, False, "float32")  # made without requires_grad: it can be turned on
    assert [c.name for c in graph.controls.leaves].count("input1") == 1
    back = dbg.rerun(requires_grad={"input1": True})
    assert [n.leaf.name for n in back.leaves if n.leaf is not None] == ["input1"]


def test_a_rerun_that_steps_the_optimizer_puts_back_the_parameters_version_counters(shell: InteractiveShell) -> None:
    # the step is in a helper function (no copy before the first run): the guard puts the parameters back
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(10, 2)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "def train(loss):\n    opt.zero_grad()\n    loss.backward()\n    opt.step()",
        store_history=False,
    )
    dbg = shell.run_cell("%%gradsight\nloss = model(torch.randn(4, 10)).pow(2).sum()\ntrain(loss)").result
    model = shell.user_ns["model"]
    weight, versions = model.weight.detach().clone(), (model.weight._version, model.bias._version)
    pending = model(torch.randn(4, 10, requires_grad=True)).sum()  # saves the weight at its version now
    dbg.rerun()
    assert torch.equal(model.weight, weight) and (model.weight._version, model.bias._version) == versions
    pending.backward()  # raised "modified by an inplace operation" while the step's counters stayed moved
    assert model.weight.grad is not None
