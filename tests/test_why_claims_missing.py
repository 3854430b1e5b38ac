"""``graph.missing`` and a run's message say only what is true of the leaves: a leaf whose ``.grad`` a
%%gradsight cell's own backward wrote (through a graph an earlier cell computed) is not missing a
gradient; a model run that built no graph because every parameter is frozen says so, instead of the
general "Set requires_grad=True on an input"."""

from __future__ import annotations

from typing import Any

import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


SEED = """input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out4 = (2 * torch.sin(input1) + 1).sum()
"""


def test_a_leaf_the_cells_own_backward_gave_a_grad_is_not_missing(shell: InteractiveShell) -> None:
    run(shell, SEED)
    dbg = run(shell, "out4.backward()\ninput1.grad")
    grad = shell.user_ns["input1"].grad
    assert grad is not None
    assert torch.allclose(grad, 2 * torch.cos(shell.user_ns["input1"].detach()))  # this cell's backward wrote it
    assert "input1" not in {w.name for w in dbg.graph.missing}
    assert "this cell's backward" in dbg.graph.message  # the message stays as it was
    why = dbg.why("input1")  # why() still answers where the gradient came from
    assert f"input1.grad holds a gradient (norm {float(grad.norm()):.4g}), from this cell's backward" in why.message
    assert torch.equal(shell.user_ns["input1"].grad, grad)  # untouched


def test_a_leaf_without_grad_beside_such_a_backward_is_still_missing(shell: InteractiveShell) -> None:
    run(shell, SEED + "w = torch.randn(3, requires_grad=True)")
    dbg = run(shell, "out4.backward()\nn = w.numel()  # reads w, which no backward reaches\ninput1.grad")
    missing = {w.name: w for w in dbg.graph.missing}
    assert "input1" not in missing
    assert "w" in missing and shell.user_ns["w"].grad is None


def test_a_cell_that_only_reads_an_earlier_grad_keeps_the_leaf_listed(shell: InteractiveShell) -> None:
    run(shell, SEED + "out4.backward()")
    dbg = run(shell, "input1.grad")  # no backward in this cell: the leaf got nothing here
    (missing,) = dbg.graph.missing
    assert missing.name == "input1" and "from an earlier backward" in missing.message


def _frozen() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_a_fully_frozen_model_says_its_parameters_are_frozen() -> None:
    model = _frozen()
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    message = dbg.graph.message
    assert message is not None and not dbg.graph.nodes
    assert "Set requires_grad=True on an input" not in message
    assert "the model is frozen" in message and "all 4 of its parameters (0.weight, 0.bias, 2.weight and 1 more)" in (
        message
    )
    assert "model.requires_grad_(True)" in message and "dbg.rerun(requires_grad={'0.weight': True})" in message
    # graph.missing says the same of each parameter
    assert {w.name: w.reason for w in dbg.graph.missing} == dict.fromkeys(
        ("0.weight", "0.bias", "2.weight", "2.bias"), "requires_grad_false"
    )
    # the advice holds: that re-run builds a graph, and leaves the model frozen
    graph = dbg.rerun(requires_grad={"0.weight": True})
    assert graph.nodes and graph.message is None
    assert "0.weight" not in {w.name for w in graph.missing}
    assert not any(p.requires_grad for p in model.parameters())


def test_a_model_with_a_trainable_parameter_keeps_the_general_wording() -> None:
    model = _frozen()
    model[2].bias.requires_grad_(True)
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda out: out.detach().sum())
    message = dbg.graph.message
    assert message is not None and "frozen" not in message and "detached" in message
