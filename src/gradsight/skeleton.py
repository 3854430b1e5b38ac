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

    def s(text: str | None) -> int:
        if text is None:
            return -1
        return strings.setdefault(text, len(strings))

    n = len(graph.nodes)
    index = {node.id: i for i, node in enumerate(graph.nodes)}
    name, module, leaf, variable, shape, rank = (np.empty(n, "<i4") for _ in range(6))
    kind, flags = np.empty(n, "<u1"), np.empty(n, "<u1")
    norm = np.empty(n, "<f4")
    offsets = np.empty(n + 1, "<u4")
    targets: list[int] = []
    input_nr: list[int] = []
    offsets[0] = 0
    for i, node in enumerate(graph.nodes):
        name[i], module[i] = s(node.name), s(node.module)
        leaf[i] = s(node.leaf.name if node.leaf is not None else None)
        variable[i] = s(node.variable)
        shape[i] = s(format_shape(node.outputs[0].shape)) if node.outputs else -1
        rank[i] = _rank(node.id)
        kind[i] = KIND_CODES[node.kind]
        flags[i] = _flags(node)
        norm[i] = node.grad_norm if node.grad_norm is not None and math.isfinite(node.grad_norm) else np.nan
        for dst, nr in node.next:
            targets.append(-1 if dst is None else index[dst])
            input_nr.append(nr)
        offsets[i + 1] = len(targets)
    columns = {
        "name": name, "module": module, "leaf": leaf, "variable": variable, "shape": shape, "rank": rank,
        "kind": kind, "flags": flags, "grad_norm": norm, "edge_offsets": offsets,
        "edge_targets": np.asarray(targets, "<i4"), "edge_input_nr": np.asarray(input_nr, "<u2"),
    }  # fmt: skip
    return {"count": n, "strings": list(strings), **{k: memoryview(v.tobytes()) for k, v in columns.items()}}


def comm_payload(wire: Wire) -> tuple[str, list[bytes]]:
    """What the comm sends for a graph wire: the JSON text and the binary buffers taken out of it
    (as ipywidgets does), for measuring sizes and times."""
    skeleton = wire.get("skeleton")
    if not skeleton:
        return json.dumps(wire, allow_nan=False), []
    buffers = [bytes(v) for v in skeleton.values() if isinstance(v, memoryview)]
    rest = {k: v for k, v in skeleton.items() if not isinstance(v, memoryview)}
    return json.dumps({**wire, "skeleton": rest}, allow_nan=False), buffers


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
    if any(g is not None and nonfinite_summary(g) for g in node.grad_in):
        bits |= 4
    return bits | (OPAQUE_CODES[node.opaque_kind] << 3)


def nonfinite_summary(t: Any) -> bool:
    return bool(t.nan_count or t.inf_count or (t.norm is not None and not math.isfinite(t.norm)))
