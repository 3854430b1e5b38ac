"""The binary skeleton of big graphs: part of the wire contract (see schema.py).

Past :data:`SKELETON_THRESHOLD` nodes, ``graph_to_wire`` sends ``"nodes": None`` and this skeleton:
little-endian typed columns (one per node, edges in CSR form) plus one table of distinct strings,
about 45 bytes per node instead of ~700 for JSON nodes. Node ids are not sent: they follow from the
columns exactly as ``names.op_ids`` builds them (:func:`skeleton_ids`), which ``js/skeleton.ts``
repeats. Details (saved values, gradients, source) come with the inspect reply's ``detail``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .graph import Graph, Node, format_shape

Wire = dict[str, Any]

SKELETON_THRESHOLD = 2000

KIND_CODES = {"op": 0, "leaf": 1, "root": 2, "opaque": 3}
OPAQUE_CODES = {None: 0, "compiled": 1, "checkpoint": 2, "custom": 3, "backward-hook": 4}
# flags: bit 0 executed known, bit 1 executed, bit 2 nonfinite (NaN/Inf in a gradient), bits 3-5 opaque kind


def skeleton_to_wire(graph: Graph) -> Wire:
    """Columns and string table for ``graph`` (bytes values become binary buffers on the wire)."""
    import numpy as np

    strings: dict[str, int] = {}
    intern = strings.setdefault

    def s(text: str | None) -> int:
        return -1 if text is None else intern(text, len(strings))

    nodes = graph.nodes
    index = {node.id: i for i, node in enumerate(nodes)}
    nan = float("nan")
    # Plain lists, one numpy conversion per column: assigning numpy items one by one was 3× slower.
    shapes: dict[tuple[int, ...], int] = {}
    edges = [node.next for node in nodes]
    columns: dict[str, Any] = {
        "name": np.asarray([s(n.name) for n in nodes], "<i4"),
        "module": np.asarray([s(n.module) for n in nodes], "<i4"),
        "leaf": np.asarray([s(n.leaf.name) if n.leaf is not None else -1 for n in nodes], "<i4"),
        "variable": np.asarray([s(n.variable) for n in nodes], "<i4"),
        "shape": np.asarray([_shape(n, shapes, s) for n in nodes], "<i4"),
        "rank": np.asarray([_rank(n.id) for n in nodes], "<i4"),
        "kind": np.asarray([KIND_CODES[n.kind] for n in nodes], "<u1"),
        "flags": np.asarray([_flags(n) for n in nodes], "<u1"),
        "grad_norm": np.asarray(
            [n.grad_norm if n.grad_norm is not None and math.isfinite(n.grad_norm) else nan for n in nodes], "<f4"
        ),
        "edge_offsets": np.cumsum([0, *(len(e) for e in edges)], dtype="<u4"),
        "edge_targets": np.asarray([-1 if dst is None else index[dst] for e in edges for dst, _ in e], "<i4"),
        "edge_input_nr": np.asarray([nr for e in edges for _, nr in e], "<u2"),
    }
    return {"count": len(nodes), "strings": list(strings), **{k: memoryview(v.tobytes()) for k, v in columns.items()}}


def _shape(node: Node, cache: dict[tuple[int, ...], int], s: Any) -> int:
    if not node.outputs:
        return -1
    shape = node.outputs[0].shape
    found = cache.get(shape)
    if found is None:
        found = cache[shape] = s(format_shape(shape))
    return int(found)


def graph_transport(wire: Wire) -> Wire:
    """What the ``graph`` trait sends for a graph wire. Skeleton wires go as they are (binary columns
    plus a small JSON part). JSON-node wires go packed: ``{"schema_version", "packed": <UTF-8 JSON>}``,
    one binary buffer, because ipywidgets walks every list and dict of a trait's value looking for
    buffers and the kernel's session encodes it again: 30-50 ms per publish of a 1k-node graph
    (~1.4 KB of JSON per node), paid on every live step shown. ``js/wire.ts`` unpacks it."""
    if wire.get("nodes") is None:
        return wire
    text = json.dumps(wire, allow_nan=False, separators=(",", ":"))
    return {"schema_version": wire["schema_version"], "packed": memoryview(text.encode())}


def comm_payload(wire: Wire) -> tuple[str, list[bytes]]:
    """What the comm sends for a graph wire: the JSON text and the binary buffers taken out of it
    (as ipywidgets does), for measuring sizes and times."""
    sent = graph_transport(wire)
    packed = sent.get("packed")
    if packed is not None:
        return json.dumps({k: v for k, v in sent.items() if k != "packed"}), [bytes(packed)]
    skeleton = sent["skeleton"]
    buffers = [bytes(v) for v in skeleton.values() if isinstance(v, memoryview)]
    rest = {k: v for k, v in skeleton.items() if not isinstance(v, memoryview)}
    return json.dumps({**sent, "skeleton": rest}, allow_nan=False), buffers


def skeleton_ids(names: list[str], kinds: list[str], modules: list[str | None], leaves: list[str | None],
                 ranks: list[int]) -> list[str]:  # fmt: skip
    """Node ids from skeleton columns: the rule of names.op_ids, which the JS side repeats."""
    ids = []
    for name, kind, module, leaf, k in zip(names, kinds, modules, leaves, ranks, strict=True):
        if kind == "leaf":
            base = f"leaf:{leaf}" if leaf else name
        else:
            base = f"{module}/{name}" if module else name
        ids.append(base if k < 0 else f"{base}#{k}")
    return ids


def _rank(node_id: str) -> int:
    head, sep, tail = node_id.rpartition("#")
    return int(tail) if sep and tail.isdigit() and head else -1


def _flags(node: Node) -> int:
    bits = 0
    if node.executed is not None:
        bits |= 1 | (2 if node.executed else 0)
        if node.nonfinite_gradient:
            bits |= 4
    return bits | (OPAQUE_CODES[node.opaque_kind] << 3)
