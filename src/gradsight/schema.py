"""The wire contract between Python and the view: one versioned dict shape.

Mirrored by ``js/wire.ts`` (types + a runtime guard). Golden snapshots written by the Python tests
(``tests/golden/*.json``) are parsed by the JS tests, so drift between the two sides fails a test.

Rules: snake_case keys; no NaN/Inf in JSON (non-finite statistics become ``null``, with
``nan_count`` / ``inf_count``, a note or a ``text`` beside them; a loss, a diff's gradient norm and
a ``.grad`` history's norms become ``"nan"`` / ``"inf"`` / ``"-inf"``); every saved value is a
tagged object; a dim without one size (a nested tensor's ragged dim) is ``-1``.

>>> from gradsight.graph import Graph
>>> graph_to_wire(Graph())["schema_version"]
9

The ``graph`` trait sends :func:`graph_transport` of this dict: past 2,000 nodes a binary skeleton,
below it the JSON text packed into one buffer (v5).

Besides the graph (a synced trait), requests from the view are answered with messages:
``inspect`` → :func:`inspection_to_wire` and ``values`` → :func:`preview_to_wire`, each a JSON
part plus binary buffers (previews: float32, or float64 when a value does not fit float32), never
whole tensors.
"""

from __future__ import annotations

import math
from typing import Any

from .diff import GraphDiff
from .graph import (
    Controls,
    Graph,
    LeafControl,
    LeafInfo,
    Node,
    OutputMeta,
    RunInfo,
    SavedValue,
    TensorSummary,
    Unavailable,
    Why,
)  # fmt: skip
from .inspection import Histogram, Inspection, Preview, TensorView
from .skeleton import (
    SKELETON_THRESHOLD,
    comm_payload,
    graph_transport,
    skeleton_ids,
    skeleton_to_wire,
)

__all__ = [
    "SCHEMA_VERSION",
    "SKELETON_THRESHOLD",
    "SchemaError",
    "comm_payload",
    "graph_from_wire",
    "graph_to_wire",
    "graph_transport",
    "skeleton_ids",
]

# 9: why reasons exploding/vanishing/backward_error, a leaf control's dtype; 8: a preview's buffer is
# float32 or float64 (preview.dtype); 7: NaN/Inf losses as text
SCHEMA_VERSION = 9

Wire = dict[str, Any]


class SchemaError(ValueError):
    """A wire dict that does not follow this schema version."""


def graph_to_wire(graph: Graph, skeleton_threshold: int | None = None) -> Wire:
    """The dict the view receives for ``graph``: JSON nodes, or past ``skeleton_threshold`` nodes
    (default :data:`SKELETON_THRESHOLD`) a binary skeleton and ``"nodes": None``."""
    threshold = SKELETON_THRESHOLD if skeleton_threshold is None else skeleton_threshold
    big = len(graph.nodes) > threshold
    return {
        "schema_version": SCHEMA_VERSION,
        "roots": list(graph.roots),
        "message": graph.message,
        "notes": list(graph.notes),
        "run": _run_to_wire(graph.run),
        "missing": [why_to_wire(w) for w in graph.missing],
        "controls": _controls_to_wire(graph.controls),
        "nodes": None if big else [node_to_wire(n) for n in graph.nodes],
        "skeleton": skeleton_to_wire(graph) if big else None,
    }


def why_to_wire(w: Why) -> Wire:
    return {"name": w.name, "reason": w.reason, "message": w.message, "where": w.where, "source": w.source}


def _controls_to_wire(c: Controls) -> Wire:
    return {
        "rerun": c.rerun,
        "note": c.note,
        "leaves": [
            {"name": leaf.name, "requires_grad": leaf.requires_grad, "in_graph": leaf.in_graph, "dtype": leaf.dtype}
            for leaf in c.leaves
        ],
        "modules": list(c.modules),
        "variables": list(c.variables),
        "detach_nodes": c.detach_nodes,
    }


def diff_to_wire(d: GraphDiff | None) -> Wire | None:
    """The ``diff`` trait: what changed between two runs (None when there is nothing to compare)."""
    if d is None:
        return None
    return {
        "before": d.before,
        "after": d.after,
        "added": list(d.added),
        "removed": [{"id": r.id, "name": r.name, "kind": r.kind, "module": r.module} for r in d.removed],
        "gained_grad": list(d.gained_grad),
        "lost_grad": list(d.lost_grad),
        "loss": {"before": number(d.loss_before), "after": number(d.loss_after)},
        "grad_norms": [{"name": c.name, "before": number(c.before), "after": number(c.after)} for c in d.grad_norms],
        "saved_bytes": {"before": d.saved_bytes_before, "after": d.saved_bytes_after},
    }


def _run_to_wire(r: RunInfo) -> Wire:
    return {
        "mode": r.mode,
        "step": r.step,
        "root_gradient": r.root_gradient,
        "loss": number(r.loss),
        "kept_bytes": r.kept_bytes,
        "budget_bytes": r.budget_bytes,
        "dropped": r.dropped,
        "errors": list(r.errors),
        "index": r.index,
        "toggles": None if r.toggles is None else dict(r.toggles),
    }


def graph_from_wire(wire: Wire) -> Graph:
    """The inverse of :func:`graph_to_wire` (non-finite statistics come back as ``None``; a NaN or
    infinite loss as the float it was)."""
    if not isinstance(wire, dict) or wire.get("schema_version") != SCHEMA_VERSION:
        raise SchemaError(f"expected a graph of schema_version {SCHEMA_VERSION}")
    if wire.get("nodes") is None:
        raise SchemaError("this graph came as a binary skeleton, which leaves out node details: decode it instead")
    return Graph(
        nodes=tuple(_node_from_wire(n) for n in wire["nodes"]),
        roots=tuple(wire["roots"]),
        message=wire["message"],
        notes=tuple(wire["notes"]),
        run=RunInfo(**{**wire["run"], "errors": tuple(wire["run"]["errors"]), "loss": unnumber(wire["run"]["loss"])}),
        missing=tuple(Why(**w) for w in wire["missing"]),
        controls=Controls(
            rerun=wire["controls"]["rerun"],
            note=wire["controls"]["note"],
            leaves=tuple(LeafControl(**leaf) for leaf in wire["controls"]["leaves"]),
            modules=tuple(wire["controls"]["modules"]),
            variables=tuple(wire["controls"]["variables"]),
            detach_nodes=wire["controls"]["detach_nodes"],
        ),
    )


def tensor_to_wire(t: TensorSummary) -> Wire:
    return {
        "shape": list(t.shape),
        "dtype": t.dtype,
        "device": t.device,
        "numel": t.numel,
        "min": _finite(t.min),
        "max": _finite(t.max),
        "mean": _finite(t.mean),
        "std": _finite(t.std),
        "norm": _finite(t.norm),
        "nan_count": t.nan_count,
        "inf_count": t.inf_count,
        "layout": t.layout,
        "freed": t.freed,
        "note": t.note,
        "nonfinite": t.nonfinite,
    }


def value_to_wire(v: SavedValue) -> Wire:
    """A saved value as a tagged object (``type`` says which)."""
    if isinstance(v, TensorSummary):
        return {"type": "tensor", **tensor_to_wire(v)}
    if isinstance(v, Unavailable):
        return {"type": "unavailable", "reason": v.reason}
    if v is None:
        return {"type": "none"}
    if isinstance(v, bool):
        return {"type": "bool", "value": v}
    if isinstance(v, int):
        return {"type": "int", "value": v if abs(v) < 2**53 else None, "text": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": _finite(v), "text": repr(v)}
    if isinstance(v, str):
        return {"type": "str", "value": v}
    if isinstance(v, tuple):
        return {"type": "tuple", "items": [value_to_wire(x) for x in v]}
    raise TypeError(f"not a saved value: {type(v).__name__}")


def node_to_wire(n: Node) -> Wire:
    return {
        "id": n.id,
        "name": n.name,
        "kind": n.kind,
        "label": n.label,
        "module": n.module,
        "variable": n.variable,
        "source": n.source,
        "next": [[dst, nr] for dst, nr in n.next],
        "outputs": [{"shape": dims(o.shape), "dtype": o.dtype, "device": o.device} for o in n.outputs],
        "saved": [{"name": k, "value": value_to_wire(v)} for k, v in n.saved.items()],
        "grad_in": [None if g is None else tensor_to_wire(g) for g in n.grad_in],
        "grad_out": [None if g is None else tensor_to_wire(g) for g in n.grad_out],
        "leaf": None if n.leaf is None else _leaf_to_wire(n.leaf),
        "opaque_kind": n.opaque_kind,
        "executed": n.executed,
        "grad_norm": _finite(n.grad_norm),
    }


def _leaf_to_wire(leaf: LeafInfo) -> Wire:
    return {
        "name": leaf.name,
        "shape": list(leaf.shape),
        "dtype": leaf.dtype,
        "device": leaf.device,
        "requires_grad": leaf.requires_grad,
        "is_parameter": leaf.is_parameter,
        "grad": None if leaf.grad is None else tensor_to_wire(leaf.grad),
    }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def dims(shape: tuple[int, ...]) -> list[int]:
    """An output's shape for JSON: -1 for a dim without one size (autograd records a jagged nested
    tensor's ragged dim as a ``torch.SymInt``; summaries say -1 already: summary.meta_of)."""
    out = list(shape)
    for d in out:
        if type(d) is not int:
            return [d if type(d) is int else -1 for d in out]
    return out


def number(x: float | None) -> float | str | None:
    """A loss or gradient norm for JSON, which has no NaN: non-finite ones as ``"nan"``, ``"inf"`` or
    ``"-inf"`` — a NaN loss is what the user is debugging, not a missing value (None)."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else "inf" if x > 0 else "-inf"


def unnumber(x: float | str | None) -> float | None:
    """The inverse of :func:`number`: ``"nan"``/``"inf"``/``"-inf"`` back to floats."""
    return float(x) if isinstance(x, str) else x


# -- inspector replies (messages, not traits) ----------------------------------------------------


def inspection_to_wire(insp: Inspection) -> tuple[Wire, list[bytes]]:
    """The ``inspect`` reply body and its buffers (one buffer per preview)."""
    buffers: list[bytes] = []
    tensors = [_view_to_wire(v, buffers) for v in insp.tensors]
    history = [{"step": h.step, "grad_norm": number(h.grad_norm), "received_norm": number(h.received_norm)}
               for h in insp.history]  # fmt: skip
    why = None if insp.why is None else why_to_wire(insp.why)
    return {"node": insp.node, "tensors": tensors, "history": history, "why": why}, buffers


def preview_to_wire(p: Preview, buffers: list[bytes]) -> Wire:
    """A preview, its values appended to ``buffers``: little-endian ``dtype`` ("float32", or
    "float64" when float32 would show a finite value as ±Inf or a nonzero one as 0)."""
    buffers.append(p.values)
    return {
        "dtype": p.dtype,
        "shape": list(p.shape),
        "full_shape": list(p.full_shape),
        "index": list(p.index),
        "block": list(p.block),
        "buffer": len(buffers) - 1,
    }


def _view_to_wire(v: TensorView, buffers: list[bytes]) -> Wire:
    return {
        "key": v.key,
        "section": v.section,
        "name": v.name,
        "summary": tensor_to_wire(v.summary),
        "kept": v.kept,
        "note": v.note,
        "histogram": None if v.histogram is None else _histogram_to_wire(v.histogram),
        "preview": None if v.preview is None else preview_to_wire(v.preview, buffers),
    }


def _histogram_to_wire(h: Histogram) -> Wire:
    return {"min": _finite(h.min), "max": _finite(h.max), "counts": list(h.counts), "nan": h.nan,
            "posinf": h.posinf, "neginf": h.neginf, "stride": h.stride}  # fmt: skip


# -- decoding (for round-trip tests and tools that read saved wire files) -------------------------


def _tensor_from_wire(w: Wire) -> TensorSummary:
    return TensorSummary(
        shape=tuple(w["shape"]), dtype=w["dtype"], device=w["device"], numel=w["numel"],
        min=w["min"], max=w["max"], mean=w["mean"], std=w["std"], norm=w["norm"],
        nan_count=w["nan_count"], inf_count=w["inf_count"], layout=w["layout"],
        freed=w["freed"], note=w["note"],
    )  # fmt: skip


def _value_from_wire(w: Wire) -> SavedValue:
    kind = w["type"]
    if kind == "tensor":
        return _tensor_from_wire(w)
    if kind == "unavailable":
        return Unavailable(w["reason"])
    if kind == "none":
        return None
    if kind == "int":
        return int(w["text"])
    if kind == "float":
        return float(w["text"])
    if kind in ("bool", "str"):
        value: bool | str = w["value"]
        return value
    if kind == "tuple":
        return tuple(_value_from_wire(x) for x in w["items"])
    raise SchemaError(f"unknown saved value type {kind!r}")


def _node_from_wire(w: Wire) -> Node:
    leaf = w["leaf"]
    return Node(
        id=w["id"],
        name=w["name"],
        kind=w["kind"],
        module=w["module"],
        variable=w["variable"],
        source=w["source"],
        opaque_kind=w["opaque_kind"],
        executed=w["executed"],
        grad_norm=w["grad_norm"],
        next=tuple((dst, nr) for dst, nr in w["next"]),
        outputs=tuple(OutputMeta(tuple(o["shape"]), o["dtype"], o["device"]) for o in w["outputs"]),
        saved={s["name"]: _value_from_wire(s["value"]) for s in w["saved"]},
        grad_in=tuple(None if g is None else _tensor_from_wire(g) for g in w["grad_in"]),
        grad_out=tuple(None if g is None else _tensor_from_wire(g) for g in w["grad_out"]),
        leaf=None
        if leaf is None
        else LeafInfo(
            name=leaf["name"],
            shape=tuple(leaf["shape"]),
            dtype=leaf["dtype"],
            device=leaf["device"],
            requires_grad=leaf["requires_grad"],
            is_parameter=leaf["is_parameter"],
            grad=None if leaf["grad"] is None else _tensor_from_wire(leaf["grad"]),
        ),
    )
