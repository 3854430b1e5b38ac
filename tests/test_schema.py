"""The wire contract: round trips, no NaN/Inf in JSON, and golden snapshots shared with the JS tests."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import pytest
import torch
from tests.zoo import ZOO

from gradsight._capture.names import leaf_names_from_params
from gradsight._capture.tensors import graph_of
from gradsight._capture.walk import CaptureOptions
from gradsight.graph import Graph, Node, TensorSummary, Unavailable
from gradsight.schema import SCHEMA_VERSION, SchemaError, graph_from_wire, graph_to_wire, value_to_wire

GOLDEN = pathlib.Path(__file__).parent / "golden"


def zoo_graph(name: str) -> Graph:
    case = ZOO[name]()
    return graph_of(case.roots, CaptureOptions(leaf_names=leaf_names_from_params(case.params)))


def _round(x: Any) -> Any:
    """Floats to 6 significant digits, so goldens do not churn on the last bits of a reduction."""
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, list):
        return [_round(v) for v in x]
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize("name", sorted(ZOO))
def test_golden_wire(name: str, update_goldens: bool) -> None:
    wire = _round(graph_to_wire(zoo_graph(name)))
    text = json.dumps(wire, indent=1, allow_nan=False, sort_keys=True) + "\n"
    path = GOLDEN / f"{name}.json"
    if update_goldens:
        path.write_text(text)
    assert path.exists(), f"no golden for {name}: run pytest --update-goldens"
    assert json.loads(path.read_text()) == json.loads(text), (
        f"wire drifted from {path}; rerun with --update-goldens if intended"
    )


@pytest.mark.parametrize("name", sorted(ZOO))
def test_round_trip(name: str) -> None:
    graph = zoo_graph(name)
    assert graph_from_wire(json.loads(json.dumps(graph_to_wire(graph), allow_nan=False))) == graph


def test_non_finite_numbers_never_reach_json() -> None:
    t = TensorSummary(shape=(2,), dtype="float32", device="cpu", numel=2, min=-math.inf, max=math.nan, norm=math.inf,
                      nan_count=1, inf_count=1)  # fmt: skip
    graph = Graph(nodes=(Node(id="a#0", name="A", kind="root", saved={"x": t, "f": math.inf}),), roots=("a#0",))
    wire = graph_to_wire(graph)
    json.dumps(wire, allow_nan=False)  # raises on NaN/Inf
    saved = wire["nodes"][0]["saved"]
    assert saved[0]["value"]["min"] is None
    assert saved[0]["value"]["nan_count"] == 1
    assert saved[1]["value"] == {"type": "float", "value": None, "text": "inf"}


def test_saved_values_are_tagged() -> None:
    assert value_to_wire(None) == {"type": "none"}
    assert value_to_wire(True) == {"type": "bool", "value": True}
    assert value_to_wire(-1) == {"type": "int", "value": -1, "text": "-1"}
    assert value_to_wire(2**64) == {"type": "int", "value": None, "text": str(2**64)}
    assert value_to_wire((1, None)) == {"type": "tuple", "items": [value_to_wire(1), {"type": "none"}]}
    assert value_to_wire(Unavailable("gone")) == {"type": "unavailable", "reason": "gone"}
    with pytest.raises(TypeError):
        value_to_wire(object())  # type: ignore[arg-type]


def test_wrong_version_is_refused() -> None:
    wire = graph_to_wire(Graph())
    wire["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SchemaError):
        graph_from_wire(wire)


def test_goldens_cover_the_zoo() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == sorted(ZOO)


def test_golden_sin_has_saved_self() -> None:
    wire = json.loads((GOLDEN / "seed_sin.json").read_text())
    sin = next(n for n in wire["nodes"] if n["name"] == "SinBackward0")
    saved = {s["name"]: s["value"] for s in sin["saved"]}
    assert saved["_saved_self"]["shape"] == [25]
    assert torch.Size(saved["_saved_self"]["shape"]) == torch.Size([25])
