"""A ``%%gradsight`` cell that binds no graph but runs a backward through one an earlier cell computed:
the leaves that backward reached got their ``.grad`` here, and the ones it did not reach, though they hold
an earlier backward's ``.grad``, got nothing here — they are missing, and why() says whose their ``.grad``
is (``cell_given``: per leaf, from the spy's ``AccumulateGrad`` hooks, not "any backward ran")."""

from __future__ import annotations

from typing import Any

import torch
from IPython.core.interactiveshell import InteractiveShell


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


STALE = """a = torch.randn(3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
(a * b).sum().backward()  # both hold a gradient from here on
"""


def test_a_leaf_the_cells_backward_did_not_reach_is_missing_though_it_holds_an_earlier_grad(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(STALE + "loss = (a * 2).sum()", store_history=False)
    b_grad = shell.user_ns["b"].grad.clone()
    dbg = run(shell, "loss.backward()\nga = a.grad\ngb = b.grad")
    (missing,) = dbg.graph.missing  # a got this cell's gradient; b only holds the first cell's
    assert missing.name == "b"
    assert missing.message.startswith("b got no gradient in this cell: its backward ran through a graph the cell")
    assert f"b.grad holds a gradient (norm {float(b_grad.norm()):.4g}), from an earlier backward" in missing.message
    assert dbg.why("b").message == missing.message
    assert "from this cell's backward" in dbg.why("a").message
    lines = dbg.graph.message.split("\n")
    assert any(line.startswith("ga is a.grad: a gradient, written by this cell's backward.") for line in lines)
    assert any(line.startswith("gb is b.grad: a gradient, written by an earlier backward") for line in lines)
    assert any(note.startswith("This cell's backward gave no gradient to: b.") for note in dbg.graph.notes)
    assert torch.equal(shell.user_ns["b"].grad, b_grad)  # untouched


def test_a_leaf_backward_inputs_left_out_is_missing(shell: InteractiveShell) -> None:
    shell.run_cell(STALE + "loss = (a * b).sum()", store_history=False)
    dbg = run(shell, "loss.backward(inputs=[a])\ngb = b.grad")
    assert [w.name for w in dbg.graph.missing] == ["b"]


def test_parameters_the_cells_backward_passed_by_are_missing_and_the_others_are_not(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.ModuleDict({'body': nn.Linear(4, 3), 'head': nn.Linear(3, 1)})\n"
        "x = torch.randn(2, 4)\nmodel.head(model.body(x)).sum().backward()\nloss = model.body(x).sum()",
        store_history=False,
    )
    dbg = run(shell, "loss.backward()\ng = model.body.weight.grad")
    assert sorted(w.name for w in dbg.graph.missing) == ["model.head.bias", "model.head.weight"]


def test_a_cell_whose_backward_reached_every_leaf_misses_none(shell: InteractiveShell) -> None:
    shell.run_cell(STALE + "loss = (a * b).sum()", store_history=False)
    dbg = run(shell, "loss.backward()\ngb = b.grad")
    assert dbg.graph.missing == ()
    assert not [n for n in dbg.graph.notes if n.startswith("This cell's backward gave no gradient")]


def test_leaves_given_by_backward_calls_the_spy_no_longer_remembers_are_not_missing(shell: InteractiveShell) -> None:
    # ten backward calls: the spy remembers the last few, yet every head got its .grad in this cell
    shell.run_cell(
        "torch.manual_seed(0)\ntrunk = nn.Linear(4, 4)\nheads = nn.ModuleList(nn.Linear(4, 1) for _ in range(10))\n"
        "stale = nn.Linear(4, 1)\nstale(torch.randn(2, 4)).sum().backward()  # an earlier backward's .grad\n"
        "x = torch.randn(3, 4)\nout = {f't{i}': head(trunk(x)).pow(2).mean() for i, head in enumerate(heads)}",
        store_history=False,
    )
    dbg = run(
        shell, "for k in out:\n    out[k].backward(retain_graph=True)\ng = stale.weight.grad\nh = heads[0].weight.grad"
    )
    assert shell.user_ns["heads"][0].weight.grad is not None
    assert sorted(w.name for w in dbg.graph.missing) == ["stale.bias", "stale.weight"]
    (note,) = [n for n in dbg.graph.notes if n.startswith("This cell's backward gave no gradient")]
    assert note.startswith("This cell's backward gave no gradient to: stale.weight, stale.bias."), note
    assert "got no gradient in this cell" not in dbg.why("heads.0.weight").message
