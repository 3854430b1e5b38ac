"""The graph is a frozen snapshot: ``node.saved`` is read-only too, and still compares, hashes,
pickles and round-trips through the wire like the plain dict it was."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest
import torch

import gradsight as gs
from gradsight.graph import Node, TensorSummary
from gradsight.schema import graph_from_wire, graph_to_wire


def _sin_node() -> tuple[gs.Debugger, Node]:
    x = torch.ones(3, requires_grad=True)
    dbg = gs.debugger((x.sin() * 2).sum())
    return dbg, dbg.graph.find("SinBackward0")[0]


def test_a_captured_nodes_saved_values_cannot_be_changed() -> None:
    dbg, node = _sin_node()
    with pytest.raises(TypeError):
        node.saved["_saved_self"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        del node.saved["_saved_self"]  # type: ignore[attr-defined]
    for write in ("clear", "update", "pop", "popitem", "setdefault"):
        with pytest.raises(TypeError):
            getattr(node.saved, write)("_saved_self")
    saved = node.saved
    with pytest.raises(TypeError):
        saved |= {"x": 1}
    with pytest.raises(TypeError):
        saved.__init__({"x": 1})  # type: ignore[misc]
    assert list(node.saved) == ["_saved_self"]
    assert isinstance(dbg.graph.node(node.id).saved["_saved_self"], TensorSummary)


def test_saved_values_compare_hash_pickle_and_round_trip_like_a_dict() -> None:
    dbg, node = _sin_node()
    assert node.saved == dict(node.saved) and dict(node.saved) == node.saved
    assert list(node.saved) == ["_saved_self"] and "_saved_self" in node.saved
    assert hash(node) == hash(copy.deepcopy(node))
    assert pickle.loads(pickle.dumps(dbg.graph)) == dbg.graph
    assert graph_from_wire(graph_to_wire(dbg.graph)) == dbg.graph


def test_a_node_built_by_hand_keeps_its_own_copy_of_the_dict_it_was_given() -> None:
    given = {"_saved_dim": 1}
    node = Node(id="SumBackward1#0", name="SumBackward1", kind="root", saved=given)
    given["_saved_dim"] = 2
    assert node.saved == {"_saved_dim": 1}
    assert Node(id="a", name="a", kind="op").saved == {}


def test_saved_values_are_a_dict_json_and_asdict_take() -> None:
    x = torch.ones(3, requires_grad=True)
    dbg = gs.debugger((x * 2).sum(dim=0))
    node = dbg.graph.find("SumBackward1")[0]
    assert isinstance(node.saved, dict)
    assert (
        json.dumps(node.saved)
        == json.dumps(dict(node.saved))
        == '{"_saved_dim": [0], "_saved_keepdim": false, "_saved_self_sym_sizes": [3]}'
    )
    exported = dataclasses.asdict(node)
    assert json.dumps(exported["saved"]) == json.dumps(node.saved)
    merged = node.saved | {"extra": 1}
    assert type(merged) is dict and merged["extra"] == 1 and "extra" not in node.saved
    assert hash(node.saved) == hash(copy.copy(node.saved)) and copy.deepcopy(node.saved) == node.saved


def test_nodes_by_id_is_read_only_and_a_pickled_graph_carries_no_explanation_cache() -> None:
    x = torch.ones(3, requires_grad=True)
    dbg = gs.debugger((x.sin() * 2).sum(), params={"x": x})
    graph = dbg.graph
    sin = graph.find("SinBackward0")[0]
    assert graph.by_id[sin.id] is sin and len(graph.by_id) == len(graph)
    with pytest.raises(TypeError):
        graph.by_id["other"] = sin  # type: ignore[index]
    dbg.why("x")
    graph._memo["probe"] = object()  # what explaining it cached (why_flow.starts_of)
    again = pickle.loads(pickle.dumps(graph))
    assert again == graph and again._memo == {} and dataclasses.replace(graph)._memo == {}
