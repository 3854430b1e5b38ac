"""Statistics for ``why()`` of the saved tensors a capture kept but did not summarize.

A live step (and a big graph's node once inspected) keeps saved tensors without taking their
statistics, so :mod:`.why_forward` could not tell whether NaN/Inf were already in the forward and
asked the user to click the node — and said the same after the click. The tensors are there: when
a gradient of the graph is NaN/Inf, :func:`with_kept_stats` summarizes the kept saved tensors that
have no statistics (a copy of the graph, for this answer only: the graph shown is not changed), so
why() finds where the forward made them, as a runnable debugger's eager statistics let it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..graph import Graph, SavedValue, TensorSummary
from .why_forward import finite_values

if TYPE_CHECKING:
    from .records import Captured
    from .store import TensorStore


def with_kept_stats(graph: Graph, cap: Captured | None) -> Graph:
    """A live ``graph`` with statistics for the saved tensors ``cap`` kept without them; ``graph`` itself
    in other modes, when no gradient is NaN/Inf (nothing to explain from the forward) or nothing was added. Worked
    out once per graph and store (a second why() summarizes nothing again)."""
    store = cap.store if cap is not None else None
    if graph.run.mode != "live" or cap is None or store is None:  # live steps summarize nothing they keep
        return graph
    if not any(n.nonfinite_gradient for n in graph.nodes):
        return graph
    memo: tuple[int, Graph | None] | None = graph._memo.get("kept_stats")
    if memo is None or memo[0] != id(store):
        memo = graph._memo["kept_stats"] = (id(store), _filled_graph(graph, cap, store))
    return memo[1] if memo[1] is not None else graph


def _filled_graph(graph: Graph, cap: Captured, store: TensorStore) -> Graph | None:
    """A copy of ``graph`` with the statistics added; None when none could be."""
    nodes, added = [], False
    for node in graph.nodes:
        i = cap.index_of.get(node.id)
        saved = {name: _filled(store, i, name, value) for name, value in node.saved.items()} if i is not None else {}
        if saved and any(saved[k] is not v for k, v in node.saved.items()):
            node, added = replace(node, saved=saved), True
        nodes.append(node)
    return replace(graph, nodes=tuple(nodes)) if added else None


def _filled(store: TensorStore, i: int, path: str, value: SavedValue) -> SavedValue:
    """``value`` (a saved value at ``path``, as the inspector keys it) with statistics where its
    tensor is kept, unchanged since autograd saved it, and not summarized yet."""
    if isinstance(value, tuple):
        items = tuple(_filled(store, i, f"{path}[{k}]", v) for k, v in enumerate(value))
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if not isinstance(value, TensorSummary) or finite_values(value) is not None:
        return value
    key = (i, "saved:" + path)
    t = store.get(key)
    if t is None or store.changed(key):  # an optimizer step since: not the values the forward saved
        return value
    from .summary import summarize

    stats = store.stats_of(key) or summarize(t, stats=True, freed=value.freed)
    return stats if finite_values(stats) is not None else value
