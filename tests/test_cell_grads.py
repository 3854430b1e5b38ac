"""%%gradsight cells: leaves' ``.grad`` summaries in big graphs, statistics of saved tensors a backward
freed after the spy read them, and what-if re-runs that start ``.grad`` where the first run did."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs

RNN = """%%gradsight
h = torch.zeros(4, 16)
for t_ in range(50):
    h = cell(xs[t_], h)
loss = head(h).pow(2).mean()
loss.backward()
"""


@pytest.fixture
def rnn(shell: InteractiveShell) -> dict[str, Any]:
    shell.run_cell(
        "torch.manual_seed(0)\ncell = nn.RNNCell(3, 16)\nhead = nn.Linear(16, 1)\nxs = torch.randn(50, 4, 3)",
        store_history=False,
    )
    return shell.user_ns


def _params(ns: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {**dict(ns["cell"].named_parameters(prefix="cell")), **dict(ns["head"].named_parameters(prefix="head"))}


def _leaf_grads(graph: gs.Graph) -> dict[str, gs.TensorSummary | None]:
    return {n.leaf.name: n.leaf.grad for n in graph.leaves if n.leaf is not None and n.leaf.name}


def test_a_big_cells_leaves_carry_their_grad_norm(shell: InteractiveShell, rnn: dict[str, Any]) -> None:
    dbg = shell.run_cell(RNN, store_history=False).result
    assert len(dbg.graph) > 128  # past the eager-statistics size
    grads = _leaf_grads(dbg.graph)
    assert set(grads) == set(_params(rnn))
    for name, p in _params(rnn).items():
        summary = grads[name]
        assert summary is not None and summary.norm == pytest.approx(float(p.grad.norm()), rel=1e-5), name


def test_a_runnable_debuggers_big_graph_carries_the_leaves_grad_norm() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(70)])
    model(torch.randn(2, 4)).sum().backward()  # the user's own .grad, which the run leaves alone
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    assert len(dbg.graph) > 128
    summary = dbg.graph.node("leaf:0.weight").leaf.grad  # type: ignore[union-attr]
    assert summary is not None and summary.norm == pytest.approx(float(model[0].weight.grad.norm()), rel=1e-5)


def test_a_small_cells_saved_tensors_freed_by_its_backward_keep_their_statistics(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(3, 1)\nx = torch.randn(8, 3)\ny = torch.randn(8, 1)")
    dbg = shell.run_cell("%%gradsight\nloss = ((model(x) - y) ** 2).mean()\nloss.backward()").result
    saved = dbg.graph.find("PowBackward0")[0].saved["_saved_self"]
    ns = shell.user_ns
    with torch.no_grad():
        expected = (ns["model"](ns["x"]) - ns["y"]).double()
    assert saved.freed and saved.min is not None and saved.norm is not None
    assert saved.min == pytest.approx(float(expected.min()), rel=1e-6)
    assert saved.max == pytest.approx(float(expected.max()), rel=1e-6)
    assert saved.mean == pytest.approx(float(expected.mean()), rel=1e-5)
    assert saved.norm == pytest.approx(float(expected.norm()), rel=1e-5)


def test_a_rerun_starts_grad_where_the_first_run_did(shell: InteractiveShell, rnn: dict[str, Any]) -> None:
    dbg = shell.run_cell(RNN, store_history=False).result
    assert not [n for n in dbg.graph.notes if ".grad" in n]
    before = {name: p.grad.clone() for name, p in _params(rnn).items()}
    graph = dbg.rerun(detach=["h"])
    assert not [n for n in graph.notes if ".grad" in n], graph.notes  # nothing accumulated in the re-run
    grads = _leaf_grads(graph)
    assert set(grads) == {"head.weight", "head.bias"}  # detached h: the RNN's leaves are cut
    for name in grads:  # the head's gradient is the same with h detached: the first run's own
        summary = grads[name]
        assert summary is not None and summary.norm == pytest.approx(float(before[name].norm()), rel=1e-5)
    for name, p in _params(rnn).items():  # the user's .grad is untouched
        assert torch.equal(p.grad, before[name]), name


def test_a_rerun_of_a_cell_whose_grad_held_a_gradient_adds_to_that_one(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nw = torch.randn(3, requires_grad=True)\nw.grad = torch.ones(3)")
    dbg = shell.run_cell("%%gradsight\nloss = (w * 2).sum()\nloss.backward()").result
    assert any("already held a gradient (norm 1.732)" in n for n in dbg.graph.notes), dbg.graph.notes
    first = _leaf_grads(dbg.graph)["w"]
    assert first is not None and first.norm == pytest.approx(float(torch.full((3,), 3.0).norm()))
    graph = dbg.rerun()
    again = _leaf_grads(graph)["w"]
    assert again is not None and again.norm == pytest.approx(first.norm)  # ones + 2, not ones + 2 + 2
    assert any("already held a gradient (norm 1.732)" in n for n in graph.notes), graph.notes
    assert torch.equal(shell.user_ns["w"].grad, torch.full((3,), 3.0))


def test_a_cell_that_clears_grad_first_keeps_no_copy_of_what_it_held(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)\nw.grad = torch.ones(3)")
    shell.run_cell("v = torch.ones(3, requires_grad=True)")
    dbg = shell.run_cell("%%gradsight\nw.grad = None\nloss = (w * 2).sum() + v.sum()\nloss.backward()").result
    first = dbg._target.first_grads  # what the debugger holds to re-run it: no gradient values
    assert first is not None and all(entry.copy is None for entry in first._first)
    graph = dbg.rerun()
    assert not [n for n in graph.notes if ".grad" in n], graph.notes
    grads = _leaf_grads(graph)
    assert grads["w"] is not None and grads["w"].norm == pytest.approx(float(torch.full((3,), 2.0).norm()))
    assert grads["v"] is not None and grads["v"].norm == pytest.approx(float(torch.ones(3).norm()))
