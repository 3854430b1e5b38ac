"""why() asked leaf after leaf walks a graph once: where gradients turned zero or NaN/Inf is kept with
the graph; the leaves' own values are looked at again only when one was edited since."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight._capture import why_flow


def test_the_graphs_walks_are_kept_between_why_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[2].weight[0, 3] = math.nan
    dbg = gs.debugger(model, inputs=torch.randn(8, 4), loss=lambda out: out.pow(2).mean())
    walks: list[Any] = []
    real = why_flow.nonfinite_origins
    monkeypatch.setattr(why_flow, "nonfinite_origins", lambda graph: walks.append(graph) or real(graph))
    for name in ("0.weight", "0.bias", "2.bias", "0.weight"):
        assert dbg.why(name).reason == "nonfinite"
    assert len(walks) <= 1
    dbg.close()


def test_a_leaf_fixed_since_is_looked_at_again() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(40)])  # > 128 nodes: no statistics
    with torch.no_grad():
        model[20].weight[0, 0] = math.nan
    dbg = gs.debugger(model, inputs=torch.randn(4, 8), loss=lambda out: out.pow(2).mean())
    assert "20.weight (1 NaN) holds" in dbg.why("0.weight").message
    with torch.no_grad():
        model[20].weight[0, 0] = 0.0  # fixed: the graph shown still has NaN, the parameter does not
    assert "20.weight" not in dbg.why("0.weight").message
    dbg.close()


def test_explaining_a_graph_keeps_neither_the_graph_nor_the_users_tensors_alive() -> None:
    import gc
    import weakref

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # a dead ReLU: zero gradients, explained from where they start
    dbg = gs.debugger(model, inputs=torch.randn(8, 4), loss=lambda out: out.sum())
    assert dbg.why("0.weight").reason == "zero"
    graph, weight = weakref.ref(dbg.graph), weakref.ref(model[0].weight)
    dbg.close()
    del dbg, model
    gc.collect()
    assert graph() is None and weight() is None
