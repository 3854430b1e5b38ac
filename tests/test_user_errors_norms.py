"""A click changes no number: inspecting a node of a big graph (a re-run that keeps its tensors)
shows, and leaves in the graph, the gradient norms of the run shown (``inspect.as_shown``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradsight as gs


def big_step(monkeypatch: pytest.MonkeyPatch) -> tuple[nn.Linear, torch.Tensor]:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)  # a big graph: norms only, tensors on a click
    torch.manual_seed(0)
    return nn.Linear(1024, 1024), torch.randn(64, 1024)  # the weight's gradient: 1M values (> 256k)


def truth(model: nn.Linear, x: torch.Tensor) -> float:
    (g,) = torch.autograd.grad(model(x).pow(2).mean(), [model.weight])
    return float(g.double().norm())


def test_a_gradient_past_the_budget_keeps_the_norm_the_graph_showed(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = big_step(monkeypatch)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).mean(), memory_budget=2**20)
    node = dbg.graph.find("TBackward0")[0]
    shown = node.grad_in[0].norm
    view = next(v for v in dbg.inspect(node.id).tensors if v.key == "grad-in:0")
    assert not view.kept  # past the budget: the summary is all there is
    after = dbg.graph.node(node.id)
    assert view.summary.norm == shown == after.grad_in[0].norm, (shown, view.summary.norm, after.grad_in[0].norm)
    assert after.grad_norm == node.grad_norm
    assert math.isclose(shown, truth(model, x), rel_tol=1e-6)
    dbg.close()


def test_a_kept_gradient_shows_its_own_accurate_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = big_step(monkeypatch)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).mean())  # the budget holds it
    node = dbg.graph.find("TBackward0")[0]
    view = next(v for v in dbg.inspect(node.id).tensors if v.key == "grad-in:0")
    assert view.kept and view.summary.std is not None
    assert math.isclose(view.summary.norm, truth(model, x), rel_tol=1e-6)
    assert math.isclose(dbg.graph.node(node.id).grad_in[0].norm, view.summary.norm, rel_tol=1e-6)
    dbg.close()


def test_a_click_that_re_runs_sends_the_graph_to_the_view_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-run's graph gets the shown norms before it reaches the view: a big graph is not
    serialized and sent twice for one click."""
    model, x = big_step(monkeypatch)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).mean(), memory_budget=2**20)
    node = dbg.graph.find("TBackward0")[0]
    sent: list[object] = []
    dbg.observe(lambda change: sent.append(change["new"]), names="graph")
    dbg.inspect(node.id)
    assert len(sent) == 1 and sent[0] is dbg.graph
    assert dbg.graph.node(node.id).grad_in[0].norm == node.grad_in[0].norm
    dbg.close()
