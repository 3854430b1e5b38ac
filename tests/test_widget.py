"""The Debugger widget's state, without a kernel: what the view receives and what it may change."""

from __future__ import annotations

import json

import pytest

import gradsight as gs
from gradsight.schema import SCHEMA_VERSION, graph_to_wire
from tests.zoo import ZOO


@pytest.fixture
def dbg() -> gs.Debugger:
    case = ZOO["seed_sin"]()
    return gs.debugger(case.roots[0], params=case.params)


def test_state_carries_the_wire_graph(dbg: gs.Debugger) -> None:
    state = dbg.get_state()
    sent = state["graph"]  # small graphs travel as one packed JSON buffer (schema.graph_transport)
    assert set(sent) == {"schema_version", "packed"} and sent["schema_version"] == SCHEMA_VERSION
    wire = json.loads(bytes(sent["packed"]))
    assert wire == json.loads(json.dumps(graph_to_wire(dbg.graph)))
    assert [n["name"] for n in wire["nodes"]] == ["AddBackward0", "MulBackward0", "SinBackward0", "AccumulateGrad"]
    assert (state["selected"], state["status"], state["error"]) == ("", "ready", "")
    assert state["options"] == {"direction": "TB"}


def test_select_validates_ids(dbg: gs.Debugger) -> None:
    sin = dbg.graph.find("SinBackward0")[0]
    dbg.select(sin.id)
    assert dbg.selected == sin.id
    with pytest.raises(KeyError, match="no node"):
        dbg.select("NoSuchBackward#9")
    assert dbg.selected == sin.id
    with pytest.raises(TypeError, match=r'a node id \(a str; "" clears the selection\), not None'):
        dbg.select(None)  # type: ignore[arg-type]
    assert dbg.selected == sin.id
    dbg.select("")
    assert dbg.selected == ""


def test_front_end_selection_updates_and_stale_ids_change_nothing(dbg: gs.Debugger) -> None:
    leaf = dbg.graph.leaves[0]
    dbg.set_state({"selected": leaf.id})  # what a click's save_changes() does
    assert dbg.selected == leaf.id and dbg.error == ""
    dbg.set_state({"selected": "stale#3"})
    assert dbg.selected == leaf.id
    assert "stale#3" in dbg.error


def test_front_end_cannot_replace_the_graph(dbg: gs.Debugger) -> None:
    before = dbg.graph
    dbg.set_state({"graph": {"schema_version": 1, "nodes": [], "roots": [], "message": None, "notes": []}})
    assert dbg.graph is before
    assert "ignored" in dbg.error


def test_options_are_validated(dbg: gs.Debugger) -> None:
    dbg.set_state({"options": {"direction": "LR"}})
    assert dbg.options == {"direction": "LR"}
    dbg.set_state({"options": {"direction": "sideways"}})
    assert dbg.options == {"direction": "LR"}
    assert "direction" in dbg.error


def test_new_graph_drops_a_selection_that_no_longer_exists(dbg: gs.Debugger) -> None:
    dbg.select(dbg.graph.find("SinBackward0")[0].id)
    dbg.graph = gs.debugger(ZOO["seed_vjp"]().roots[0]).graph
    assert dbg.selected == ""


def test_new_graph_keeps_a_selection_that_still_exists(dbg: gs.Debugger) -> None:
    sin = dbg.graph.find("SinBackward0")[0].id
    dbg.select(sin)
    case = ZOO["seed_sin"]()
    dbg.graph = gs.debugger(case.roots[0], params=case.params).graph
    assert dbg.selected == sin


def test_repr_is_informative(dbg: gs.Debugger) -> None:
    assert repr(dbg) == "<gradsight.Debugger: 4 nodes, roots ['AddBackward0#0']>"


def test_view_bundle_is_built() -> None:
    from gradsight.widget import STATIC

    assert (STATIC / "widget.js").is_file(), "run `npm run build` (make does it)"
    assert "gradsight" in (STATIC / "widget.js").read_text()


def test_a_debugger_built_from_a_graph_has_no_diff() -> None:
    assert gs.Debugger(gs.Graph()).diff is None  # {} made the view report a malformed diff


def test_a_nan_loss_travels_as_nan_not_as_missing() -> None:
    import torch

    from gradsight.schema import graph_to_wire

    model = torch.nn.Linear(3, 1)
    scale = [1.0]
    dbg = gs.debugger(model, inputs=torch.randn(4, 3), loss=lambda out: (out * scale[0]).sum())
    scale[0] = float("nan")
    dbg.rerun()
    dbg.baseline = 0
    assert graph_to_wire(dbg.graph)["run"]["loss"] == "nan"
    assert dbg.diff is not None and dbg.diff["loss"]["after"] == "nan"
    assert {n["after"] for n in dbg.diff["grad_norms"]} == {"nan"}  # not None, which the view reads as "gone"
    assert dbg.history[-1]["loss"] == "nan"


def test_a_leaf_gradient_that_overflows_travels_as_inf_in_the_diff() -> None:
    import torch

    w = torch.ones(3, requires_grad=True)
    scale = torch.ones(3)
    dbg = gs.debugger(lambda: (w * scale).sum())
    scale[0] = float("inf")  # w's gradient: [inf, 1, 1], no NaN; its statistics are taken (a small graph)
    graph = dbg.rerun()
    leaf = graph.node("leaf:w")
    assert leaf.nonfinite_gradient and leaf.grad_norm is None  # its statistics say how many: inf_count
    assert dbg.diff is not None and {n["name"]: n["after"] for n in dbg.diff["grad_norms"]} == {"w": "inf"}  # was "nan"
