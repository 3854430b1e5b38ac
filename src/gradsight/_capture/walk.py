"""Walk autograd's backward graph into a torch-free :class:`~gradsight.graph.Graph`.

The walk is iterative (a BFS over ``next_functions``): real graphs are 10k–50k nodes deep and
recursion overflows (torchviz raises RecursionError at 10k, research/autograd-facts.md §5.2).
Node objects are only held while walking; the result keeps plain data (pitfall 3: holding nodes
keeps activations alive).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..graph import Edge, Graph, LeafInfo, Node, NodeKind, OutputMeta, SavedValue, Unavailable
from . import saved as saved_mod
from .names import infer_module, op_ids
from .summary import dtype_name, summarize

ACCUMULATE_GRAD = "AccumulateGrad"
_OPAQUE_NAMES = frozenset({"BackwardHookFunctionBackward"})


@dataclass
class CaptureOptions:
    """What the caller knows beyond the graph itself.

    ``leaf_names`` maps leaf tensors (by identity) to names; ``variables`` maps grad_fn nodes to
    the user's variable names; ``presaved`` holds saved values summarized earlier (before a
    backward freed them); ``modules`` maps grad_fn nodes to their exact module path.
    """

    leaf_names: Mapping[torch.Tensor, str] = field(default_factory=dict)
    variables: Mapping[Any, str] = field(default_factory=dict)
    presaved: Mapping[Any, Mapping[str, SavedValue]] = field(default_factory=dict)
    modules: Mapping[Any, str] | None = None
    stats: bool = True


def capture(roots: Sequence[Any], options: CaptureOptions | None = None) -> Graph:
    """The graph below ``roots`` (autograd nodes, usually ``tensor.grad_fn``)."""
    opts = options or CaptureOptions()
    order, index, edges = walk(roots)
    topo = backward_order(order, index, edges, roots)
    summarize_fn = _summary_cache(opts.stats)
    names = [_short_name(n) for n in order]
    leaves = [_leaf_info(n, opts, summarize_fn) if names[i] == ACCUMULATE_GRAD else None
              for i, n in enumerate(order)]  # fmt: skip
    modules = [_module_of(i, n, opts, edges, leaves) for i, n in enumerate(order)]
    ids = op_ids(order, names, modules, leaves, topo)
    root_set = {index[r] for r in roots}
    nodes = []
    freed = 0
    for i in topo:
        n = order[i]
        saved = _saved(n, opts, summarize_fn)
        freed += any(isinstance(v, Unavailable) and v.reason == saved_mod.FREED for v in saved.values())
        nodes.append(Node(
            id=ids[i],
            name=names[i],
            kind=_kind(n, names[i], i in root_set),
            module=modules[i],
            next=tuple(_edge(dst, nr, ids) for dst, nr in edges[i]),
            saved=saved,
            leaf=leaves[i],
            outputs=_outputs(n),
            variable=opts.variables.get(n),
        ))  # fmt: skip
    notes = (_freed_note(freed),) if freed else ()
    return Graph(nodes=tuple(nodes), roots=tuple(ids[index[r]] for r in _unique(roots)), notes=notes)


def walk(roots: Sequence[Any]) -> tuple[list[Any], dict[Any, int], list[list[tuple[int | None, int]]]]:
    """BFS from ``roots``: nodes in discovery order, node → index, and per node its edges."""
    order: list[Any] = []
    index: dict[Any, int] = {}
    for r in roots:
        if r not in index:
            index[r] = len(order)
            order.append(r)
    edges: list[list[tuple[int | None, int]]] = []
    queue = deque(range(len(order)))
    while queue:
        i = queue.popleft()
        out: list[tuple[int | None, int]] = []
        for nxt, nr in order[i].next_functions:
            if nxt is None:
                out.append((None, nr))
                continue
            j = index.get(nxt)
            if j is None:
                j = index[nxt] = len(order)
                order.append(nxt)
                queue.append(j)
            out.append((j, nr))
        while len(edges) <= i:
            edges.append([])
        edges[i] = out
    return order, index, edges


def backward_order(order: list[Any], index: Mapping[Any, int],
                   edges: list[list[tuple[int | None, int]]], roots: Sequence[Any]) -> list[int]:  # fmt: skip
    """Roots first, then a topological order that prefers later-created nodes (as backward does)."""
    indegree = [0] * len(order)
    for out in edges:
        for j, _ in out:
            if j is not None:
                indegree[j] += 1
    seq = [_sequence_nr(n) for n in order]
    ready = [(-seq[i], i) for i in range(len(order)) if indegree[i] == 0]
    heapq.heapify(ready)
    root_idx = [index[r] for r in _unique(roots)]
    placed = set(root_idx)
    result = list(root_idx)
    while ready:
        _, i = heapq.heappop(ready)
        if i not in placed:
            placed.add(i)
            result.append(i)
        for j, _ in edges[i]:
            if j is not None:
                indegree[j] -= 1
                if indegree[j] == 0:
                    heapq.heappush(ready, (-seq[j], j))
    return result


def _unique(roots: Sequence[Any]) -> list[Any]:
    return list(dict.fromkeys(roots))


def _sequence_nr(node: Any) -> int:
    try:
        nr: int = node._sequence_nr()
        return nr if nr < (1 << 63) else -1  # AccumulateGrad: 2**64 - 1, no creation order
    except Exception:
        return -1


def _short_name(node: Any) -> str:
    name: str = node.name()
    return name.rsplit("::", 1)[-1]


def _kind(node: Any, name: str, is_root: bool) -> NodeKind:
    if name == ACCUMULATE_GRAD:
        return "leaf"
    if is_root:
        return "root"
    if saved_mod.is_python_function(node) or name in _OPAQUE_NAMES:
        return "opaque"
    return "op"


def _edge(dst: int | None, nr: int, ids: list[str]) -> Edge:
    return (None if dst is None else ids[dst], nr)


def _outputs(node: Any) -> tuple[OutputMeta, ...]:
    try:
        meta = node._input_metadata
        return tuple(OutputMeta(tuple(int(d) for d in m.shape), dtype_name(m.dtype), str(m.device))
                     for m in meta)  # fmt: skip
    except Exception:  # _input_metadata is private API: degrade to "unknown"
        return ()


def _leaf_info(node: Any, opts: CaptureOptions,
               summarize_fn: Callable[[torch.Tensor], Any]) -> LeafInfo:  # fmt: skip
    var = node.variable
    grad = var.grad
    return LeafInfo(
        name=opts.leaf_names.get(var),
        shape=tuple(int(d) for d in var.shape),
        dtype=dtype_name(var.dtype),
        requires_grad=bool(var.requires_grad),
        grad=None if grad is None else summarize_fn(grad),
        is_parameter=isinstance(var, torch.nn.Parameter),
    )


def _module_of(i: int, node: Any, opts: CaptureOptions,
               edges: list[list[tuple[int | None, int]]], leaves: list[LeafInfo | None]) -> str | None:  # fmt: skip
    if leaves[i] is not None:
        name = leaves[i].name  # type: ignore[union-attr]
        return name.rsplit(".", 1)[0] if name and "." in name else None
    if opts.modules is not None:
        return opts.modules.get(node)
    return infer_module([leaves[j] for j, _ in edges[i] if j is not None])


def _saved(node: Any, opts: CaptureOptions, summarize_fn: Callable[[torch.Tensor], Any]) -> dict[str, SavedValue]:
    presaved = opts.presaved.get(node)
    current = saved_mod.read_saved(node, summarize_fn)
    if presaved is None:
        return current
    # Values read before backward freed them win over "freed"; mark tensors as freed since.
    merged = dict(current)
    for key, value in presaved.items():
        if isinstance(current.get(key), Unavailable):
            merged[key] = _mark_freed(value)
    return merged


def _mark_freed(value: SavedValue) -> SavedValue:
    from dataclasses import replace

    from ..graph import TensorSummary

    if isinstance(value, TensorSummary):
        return replace(value, freed=True)
    if isinstance(value, tuple):
        return tuple(_mark_freed(v) for v in value)
    return value


def _summary_cache(stats: bool) -> Callable[[torch.Tensor], Any]:
    """Summarize each distinct tensor once (weights are saved by many nodes)."""
    cache: dict[int, tuple[torch.Tensor, Any]] = {}

    def fn(t: torch.Tensor) -> Any:
        hit = cache.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        s = summarize(t, stats=stats)
        cache[id(t)] = (t, s)  # holding t keeps id(t) from being reused during this capture
        return s

    return fn


def _freed_note(count: int) -> str:
    return (
        f"Backward already freed the saved tensors of {count} node(s), so their values are gone. "
        "Show the debugger before calling backward, run the code in a %%gradsight cell, "
        "or call backward(retain_graph=True)."
    )
