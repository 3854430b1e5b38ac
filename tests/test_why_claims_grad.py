"""why() says only what is true of a leaf's gradient: a backward the user ran before showing the
debugger did give its ``.grad``; a cell that only read a ``.grad`` computed nothing with a graph while
the leaf holds an earlier backward's gradient; a cell that raised before its backward is not told to
add the backward it has."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def test_a_graph_the_users_own_backward_freed_does_not_deny_the_gradient_it_gave() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    loss = (torch.randn(3, 2) - model(torch.randn(3, 8))).pow(2).sum()
    loss.backward()
    dbg = gs.debugger(loss, params=model)
    why = dbg.why("0.weight")
    norm = float(model[0].weight.grad.norm())
    assert why.reason == "freed" and why.where == "leaf:0.weight"
    assert "was not among what it differentiated" not in why.message
    assert f"0.weight.grad holds a gradient (norm {norm:.4g})" in why.message
    assert "did not watch that backward" in why.message


def test_a_freed_graph_still_says_which_leaves_its_backward_left_without_grad() -> None:
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    loss = (a * b).sum()
    loss.backward(inputs=[a])  # frees the graph; b is not differentiated
    dbg = gs.debugger(loss, params={"a": a, "b": b})
    assert dbg.why("b").reason == "freed"
    assert "b.grad is None: b was not among what it differentiated" in dbg.why("b").message
    assert "a.grad holds a gradient" in dbg.why("a").message


SEED = """input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out4 = (2 * torch.sin(input1) + 1).sum()
"""


def test_a_cell_that_reads_a_grad_says_an_earlier_backward_gave_it(shell: InteractiveShell) -> None:
    run(shell, SEED + "out4.backward()")
    dbg = run(shell, "input1.grad")
    grad = shell.user_ns["input1"].grad
    assert grad is not None
    message = dbg.graph.message
    assert message.startswith("the cell's last value is input1.grad: a gradient, written by an earlier backward")
    assert "requires_grad=True" not in message
    (missing,) = dbg.graph.missing
    assert missing.name == "input1" and "gets no gradient" not in missing.message
    assert f"input1.grad holds a gradient (norm {float(grad.norm()):.4g}), from an earlier backward" in missing.message
    why = dbg.why("input1")
    assert why.message == missing.message  # not "never used in the forward": the cell read its .grad
    assert torch.equal(shell.user_ns["input1"].grad, grad)  # untouched


def test_a_grad_bound_to_a_name_is_worded_under_that_name(shell: InteractiveShell) -> None:
    run(shell, SEED + "out4.backward()")
    dbg = run(shell, "g = input1.grad * 1\nh = input1.grad")
    lines = dbg.graph.message.split("\n")
    assert any(line.startswith("h is input1.grad: a gradient") for line in lines)
    assert any(line.startswith("g has requires_grad=False") for line in lines)  # a copy: the general wording


def test_a_backward_through_an_earlier_cells_graph_is_not_called_earlier(shell: InteractiveShell) -> None:
    run(shell, SEED)
    dbg = run(shell, "out4.backward()\ninput1.grad")
    assert "this cell's backward" in dbg.graph.message
    assert any(note.startswith("This cell ran a backward through a graph it bound to no name") for note in
               dbg.graph.notes)  # fmt: skip
    why = dbg.why("input1")
    assert "from this cell's backward" in why.message and "no backward ran here" not in why.message


def test_a_leaf_without_grad_in_a_graphless_cell_keeps_the_no_graph_answer(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)", store_history=False)
    dbg = run(shell, "y = w.detach() * 2")
    (missing,) = dbg.graph.missing
    assert "w gets no gradient: nothing this run computed has a graph" in missing.message


RAISES = """model = nn.Linear(100, 2)
batch = torch.randn(16, 100)
expected_output = torch.randn(16, 10)
output = model(batch)
loss = (expected_output - output).pow(2).sum()
"""


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    out: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", out.append)
    return out


def test_a_cell_that_raised_before_its_backward_is_not_told_to_add_one(
    shell: InteractiveShell, shown: list[Any]
) -> None:
    shell.run_cell("%%gradsight\n" + RAISES + "loss.backward()", store_history=False)
    why = shown[-1].why("model.weight")
    assert "add loss.backward()" not in why.message
    assert "the cell raised (RuntimeError: The size of tensor a (10) must match the size of tensor b (2)" in why.message
    assert "before its backward (loss.backward()) ran" in why.message
    assert why.where is not None


def test_a_cell_that_raised_and_has_no_backward_says_both(shell: InteractiveShell, shown: list[Any]) -> None:
    shell.run_cell("%%gradsight\n" + RAISES, store_history=False)
    why = shown[-1].why("model.weight")
    assert "the cell raised (RuntimeError" in why.message and "calls no backward" in why.message


def test_a_backward_the_cell_has_but_did_not_run_is_named(shell: InteractiveShell) -> None:
    shell.run_cell("x = torch.randn(3, requires_grad=True)", store_history=False)
    dbg = run(shell, "loss = (x * 2).sum()\nif False:\n    loss.backward()")
    message = dbg.why("x").message
    assert "no backward ran through it in this cell" in message and "the cell's loss.backward() did not run" in message
    assert "add loss.backward()" not in message
