"""A re-run that detaches a backward-graph node by id: why() and graph.missing name that cut as
definitely as a module's detach, and the ids of the runs before stay nameable after a cut removed them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight._capture.why import node_cut
from gradsight.toggles import ToggleError, Toggles


@pytest.fixture
def dbg() -> gs.Debugger:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    return gs.debugger(model, inputs=torch.randn(5, 4), loss=lambda o: o.sum())


def tanh_id(dbg: gs.Debugger) -> str:
    return dbg.graph.find("TanhBackward0")[0].id


def test_why_names_the_node_detach_that_cuts_the_path(dbg: gs.Debugger) -> None:
    tanh = tanh_id(dbg)
    graph = dbg.rerun(detach=[tanh])
    w = dbg.why("1.weight")
    assert w.reason == "detach" and f"node {tanh}" in w.message and "what-if, not your code" in w.message
    missing = {m.name: m for m in graph.missing}
    assert missing["1.weight"].reason == "detach" and missing["0.bias"].reason == "detach"
    assert "3.weight" not in missing  # above the cut: it still gets its gradient


def test_a_node_detach_answers_only_for_the_leaves_below_that_node(dbg: gs.Debugger) -> None:
    tanh, first = tanh_id(dbg), dbg.graph
    assert node_cut("3.weight", Toggles(detach=(tanh,)), [first]) is None  # above the Tanh: not its cut
    assert node_cut("1.weight", Toggles(detach=("2",)), [first]) is None  # a module's detach: the trace's
    assert node_cut("1.weight", Toggles(detach=(tanh,)), []) is None  # no run that holds the node
    cut = node_cut("0.bias", Toggles(detach=(tanh,)), [first])
    assert cut is not None and cut.reason == "detach" and cut.where is None


def test_node_ids_of_an_earlier_run_stay_nameable_after_a_cut(dbg: gs.Debugger) -> None:
    tanh = tanh_id(dbg)
    dbg.rerun(detach=["2"])
    assert tanh not in dbg.graph  # the module's detach removed it from the run shown
    graph = dbg.rerun(detach=[tanh])  # no plain re-run needed first
    assert "1.weight" in {m.name for m in graph.missing} and dbg.why("1.weight").reason == "detach"
    with pytest.raises(ToggleError, match="no module or node id named"):
        dbg.rerun(detach=["2/NoSuchBackward0#0"])
