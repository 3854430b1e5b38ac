"""The wire contract: round trips, no NaN/Inf in JSON, and golden snapshots shared with the JS tests."""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import pytest
import torch

from gradsight._capture.names import leaf_names_from_params
from gradsight._capture.records import CaptureOptions
from gradsight._capture.tensors import graph_of
from gradsight.graph import Controls, Graph, LeafControl, Node, RunInfo, TensorSummary, Unavailable, Why
from gradsight.schema import (
    SCHEMA_VERSION,
    SKELETON_THRESHOLD,
    SchemaError,
    graph_from_wire,
    graph_to_wire,
    value_to_wire,
)
from tests.zoo import ZOO

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
    drift = _drift(json.loads(path.read_text()), json.loads(text))
    assert drift is None, f"wire drifted from {path} at {drift}; rerun with --update-goldens if intended"


def _drift(golden: Any, now: Any, at: str = "$") -> str | None:
    """Where ``now`` differs from ``golden`` (None: nowhere). Floats agree within 1e-5 relative: a
    reduction's last bits depend on the CPU's kernels (AVX2 or AVX-512), and a 6-digit rounding of
    0.4878275 reads 0.487828 on one machine and 0.487827 on another."""
    if isinstance(golden, float) and isinstance(now, float):
        return None if math.isclose(golden, now, rel_tol=1e-5, abs_tol=1e-30) else f"{at}: {golden} != {now}"
    if isinstance(golden, dict) and isinstance(now, dict):
        if golden.keys() != now.keys():
            return f"{at}: keys {sorted(golden.keys() ^ now.keys())}"
        return next((d for k in sorted(golden) if (d := _drift(golden[k], now[k], f"{at}.{k}"))), None)
    if isinstance(golden, list) and isinstance(now, list):
        if len(golden) != len(now):
            return f"{at}: {len(golden)} items != {len(now)}"
        return next(
            (d for i, (g, n) in enumerate(zip(golden, now, strict=True)) if (d := _drift(g, n, f"{at}[{i}]"))), None
        )
    return None if golden == now and type(golden) is type(now) else f"{at}: {golden!r} != {now!r}"


def test_golden_drift_is_found_and_last_digits_are_not() -> None:
    golden = {"nodes": [{"std": 0.487828, "name": "AddBackward0", "n": 3}]}
    assert _drift(golden, {"nodes": [{"std": 0.487827, "name": "AddBackward0", "n": 3}]}) is None
    assert (
        _drift(golden, {"nodes": [{"std": 0.4879, "name": "AddBackward0", "n": 3}]})
        == "$.nodes[0].std: 0.487828 != 0.4879"
    )
    assert _drift(golden, {"nodes": [{"std": 0.487828, "name": "MulBackward0", "n": 3}]}) is not None
    assert _drift(golden, {"nodes": [{"std": 0.487828, "name": "AddBackward0", "n": 3.0}]}) is not None
    assert _drift(golden, {"nodes": []}) is not None


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


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf, 0.25])
def test_a_non_finite_loss_survives_the_round_trip(loss: float) -> None:
    # A NaN loss is what the user is debugging: the wire carries it as text, the reader gets the float.
    graph = Graph(nodes=(Node(id="a#0", name="A", kind="root"),), roots=("a#0",), run=RunInfo(loss=loss))
    back = graph_from_wire(json.loads(json.dumps(graph_to_wire(graph), allow_nan=False)))
    assert isinstance(back.run.loss, float)
    assert math.isnan(back.run.loss) if math.isnan(loss) else back.run.loss == loss


def test_leaf_controls_carry_their_dtype_and_why_reasons_the_new_kinds() -> None:
    # The view offers no requires_grad box for an integer tensor it does not draw: only the control says int64.
    leaves = (
        LeafControl("ids", False, False, "int64"),
        LeafControl("w", True, True, "float32"),
        LeafControl("x", True, True),
    )
    missing = tuple(Why(f"p{i}", reason, "m") for i, reason in enumerate(("exploding", "vanishing", "backward_error")))
    graph = Graph(nodes=(Node(id="a#0", name="A", kind="root"),), roots=("a#0",),
                  controls=Controls(rerun=True, leaves=leaves), missing=missing)  # fmt: skip
    wire = json.loads(json.dumps(graph_to_wire(graph), allow_nan=False))
    assert [leaf["dtype"] for leaf in wire["controls"]["leaves"]] == ["int64", "float32", None]
    assert graph_from_wire(wire) == graph


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


# -- the binary skeleton of big graphs ---------------------------------------------------------------


def decode_skeleton(wire: dict[str, Any]) -> dict[str, list[Any]]:
    import numpy as np

    sk = wire["skeleton"]
    dtypes = {"name": "<i4", "module": "<i4", "leaf": "<i4", "variable": "<i4", "shape": "<i4", "rank": "<i4",
              "kind": "<u1", "flags": "<u1", "grad_norm": "<f4", "edge_offsets": "<u4", "edge_targets": "<i4",
              "edge_input_nr": "<u2"}  # fmt: skip
    cols = {k: np.frombuffer(bytes(sk[k]), dtype=t).tolist() for k, t in dtypes.items()}
    table = sk["strings"]
    cols["strings"] = table
    return cols


def big_graph() -> Graph:
    from tests.zoo import TinyModel

    torch.manual_seed(0)
    layers = torch.nn.Sequential(*[TinyModel() for _ in range(1)], *[torch.nn.Linear(10, 10) for _ in range(600)])
    loss = layers(torch.randn(2, 1000)).pow(2).sum()
    return graph_of([loss], CaptureOptions(leaf_names=leaf_names_from_params(layers), stats=False))


def test_big_graphs_travel_as_a_compact_skeleton() -> None:
    graph = big_graph()
    assert len(graph) > SKELETON_THRESHOLD
    wire = graph_to_wire(graph)
    assert wire["nodes"] is None
    size = sum(len(v) for v in wire["skeleton"].values() if isinstance(v, memoryview))
    size += len(json.dumps(wire["skeleton"]["strings"]))
    assert size / len(graph) <= 60, size / len(graph)
    with pytest.raises(SchemaError):
        graph_from_wire(wire)


def test_skeleton_columns_rebuild_names_edges_and_ids() -> None:
    from gradsight.skeleton import KIND_CODES, skeleton_ids

    graph = big_graph()
    cols = decode_skeleton(graph_to_wire(graph))
    table = cols["strings"]
    kinds = {v: k for k, v in KIND_CODES.items()}
    at = lambda i: None if i < 0 else table[i]  # noqa: E731
    names = [table[i] for i in cols["name"]]
    ids = skeleton_ids(names, [kinds[k] for k in cols["kind"]], [at(i) for i in cols["module"]],
                       [at(i) for i in cols["leaf"]], cols["rank"])  # fmt: skip
    assert ids == [n.id for n in graph.nodes]
    assert names == [n.name for n in graph.nodes]
    for i, node in enumerate(graph.nodes):
        lo, hi = cols["edge_offsets"][i], cols["edge_offsets"][i + 1]
        targets = [None if t < 0 else graph.nodes[t].id for t in cols["edge_targets"][lo:hi]]
        assert list(node.next) == list(zip(targets, cols["edge_input_nr"][lo:hi], strict=True))


def test_golden_skeleton(update_goldens: bool) -> None:
    """A skeleton snapshot, buffers base64-encoded, for the JS decoder's tests."""
    import base64

    graph = graph_of(
        ZOO["seed_tiny_model"]().roots,
        CaptureOptions(leaf_names=leaf_names_from_params(ZOO["seed_tiny_model"]().params)),
    )
    wire = graph_to_wire(graph, skeleton_threshold=0)
    sk = {
        k: base64.b64encode(bytes(v)).decode() if isinstance(v, memoryview) else v for k, v in wire["skeleton"].items()
    }
    text = (
        json.dumps({**wire, "skeleton": sk, "expected_ids": [n.id for n in graph.nodes]}, indent=1, sort_keys=True)
        + "\n"
    )
    path = GOLDEN / "skeleton" / "seed_tiny_model.json"
    if update_goldens:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert json.loads(path.read_text())["expected_ids"] == [n.id for n in graph.nodes]
    assert json.loads(path.read_text())["skeleton"]["count"] == len(graph)


def test_a_preview_says_the_dtype_of_its_buffer() -> None:
    from gradsight.inspection import Preview
    from gradsight.schema import preview_to_wire

    buffers: list[bytes] = [b"other"]
    p = Preview(shape=(2,), full_shape=(2,), index=(), block=(1,), values=bytes(16), dtype="float64")
    assert preview_to_wire(p, buffers) == {"dtype": "float64", "shape": [2], "full_shape": [2], "index": [],
                                           "block": [1], "buffer": 1}  # fmt: skip
    assert buffers[1] == bytes(16)
