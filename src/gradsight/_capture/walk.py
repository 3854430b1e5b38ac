"""Walk autograd's backward graph into a torch-free :class:`~gradsight.graph.Graph`.

Two phases. :func:`collect` is the only part that touches torch: an iterative BFS over
``next_functions`` (real graphs are 10k–50k nodes deep and recursion overflows: torchviz raises
RecursionError at 10k, research/autograd-facts.md §5.2) reading names, edges, output metadata,
saved values and leaves into plain lists. :func:`build` then orders the nodes, names them and
freezes them. Node objects are dropped after ``collect`` (pitfall 3: holding nodes keeps
activations alive).
"""

from __future__ import annotations

import gc
import heapq
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from ..graph import (
    Graph,
    LeafInfo,
    Node,
    NodeKind,
    OpaqueKind,
    OutputMeta,
    RunInfo,
    SavedValue,
    TensorSummary,
    Unavailable,
)
from . import saved as saved_mod
from .names import infer_module, module_of_leaf, op_ids
from .records import CaptureOptions, Collected, Gradients
from .summary import dtype_name, meta_of, summarize

ACCUMULATE_GRAD = "AccumulateGrad"
_OPAQUE_BY_NAME: dict[str, OpaqueKind] = {
    "CompiledFunctionBackward": "compiled",  # a torch.compile region: one node (autograd-facts §4.11)
    "CheckpointFunctionBackward": "checkpoint",  # reentrant checkpoint
    "BackwardHookFunctionBackward": "backward-hook",  # inserted by register_full_backward_hook
}
_NO_SEQ = -1  # AccumulateGrad reports 2**64 - 1: it has no creation order


def capture(roots: Sequence[Any], options: CaptureOptions | None = None) -> Graph:
    """The graph below ``roots`` (autograd nodes, usually ``tensor.grad_fn``)."""
    with gc_paused():
        collected, _ = collect(roots, options or CaptureOptions())
        return build(collected)


@contextmanager
def gc_paused(*, promote: bool = True) -> Iterator[None]:
    """Pause the cyclic GC: a capture allocates ~10 objects per node, and the full collections
    that triggers scan every object of the user's session, which tripled capture time at 10k
    nodes (measured in benchmarks/bench_walk.py; research/autograd-facts.md §5.2 saw the same).

    ``promote``: then move the young objects to the oldest generation (:func:`_promote_young`). Not
    for captures that repeat (live steps): objects moved that way never count toward a full
    collection, so repeated, it stopped full collections altogether — every captured step's cyclic
    garbage, and the user's, stayed until an explicit ``gc.collect()`` (RSS 537 MB → 2 GB over 400
    steps of a 4 MB batch)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if promote:
                _promote_young()
            gc.enable()


def _promote_young() -> None:
    """Move the young objects (mostly the capture's: they become the debugger's graph, long-lived) to
    the oldest generation without scanning them. Left young, the next two young collections scan
    each of them (~10 per node: 140 ms for each scan at 50k nodes, paid right after the capture).
    ``gc.freeze()`` moves every tracked object to the permanent generation and ``gc.unfreeze()``
    moves them all to the oldest one; skipped when the program froze objects itself. Once per
    debugger or re-run only: moved objects do not count toward the next full collection."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def collect(roots: Sequence[Any], opts: CaptureOptions) -> tuple[Collected, list[Any]]:
    """Phase 1: read everything gradsight shows from the live graph.

    Also returns the node objects in walk order (to install hooks); drop them as soon as possible.
    """
    order, index, edges = walk(roots)
    if opts.store is not None:
        opts.store.graph_size(len(order))
    summarize_fn = _summary_cache(opts.stats)
    names = [short_name(n) for n in order]
    seqs = [_sequence_nr(n) for n in order]
    leaves = [
        _leaf_info(i, n, opts, summarize_fn) if names[i] == ACCUMULATE_GRAD else None for i, n in enumerate(order)
    ]
    collected = Collected(
        names=names,
        seqs=seqs,
        opaque=[_opaque_kind(n, names[i]) for i, n in enumerate(order)],
        edges=edges,
        outputs=[_outputs(n) if leaves[i] is None else _leaf_outputs(leaves[i]) for i, n in enumerate(order)],
        saved=[_saved(i, n, opts, summarize_fn) for i, n in enumerate(order)],
        leaves=leaves,
        variables=[opts.variables.get(n) for n in order] if opts.variables else [None] * len(order),
        modules=None if opts.module_of is None else [opts.module_of(q) if q >= 0 else None for q in seqs],
        sources=[None] * len(order)
        if opts.source_of is None
        else [opts.source_of(q) if q >= 0 else None for q in seqs],
        roots=[index[r] for r in dict.fromkeys(roots)],
    )
    return collected, order


def assign_ids(c: Collected) -> list[str]:
    """Order, modules and stable ids (known before backward, so a re-run can watch a node by id)."""
    if not c.ids:
        c.top = graph_roots(c)
        c.topo = backward_order(c.seqs, c.edges, c.top)
        c.final_modules = [_module_of(i, c) for i in range(len(c.names))]
        c.ids = op_ids(c.names, c.seqs, c.final_modules, c.leaves, c.topo)
    return c.ids


def build(c: Collected, grads: Gradients | None = None, run: RunInfo | None = None) -> Graph:
    """Phase 2 (torch-free): order, modules, ids, frozen nodes (with gradients when recorded)."""
    ids = assign_ids(c)
    topo, modules = c.topo, c.final_modules
    roots = c.top
    root_set = set(roots)
    g = grads or Gradients({}, {}, set(), {})
    grad_in, grad_out, executed, norms = g.grad_in.get, g.grad_out.get, g.executed, g.norms.get
    observed = grads is not None
    nodes = tuple([
        Node.fast(
            id=ids[i],
            name=c.names[i],
            kind=_kind(c, i, i in root_set),
            module=modules[i],
            next=tuple([(None if dst is None else ids[dst], nr) for dst, nr in c.edges[i]]),
            saved=c.saved[i],
            leaf=c.leaves[i],
            outputs=c.outputs[i],
            variable=c.variables[i],
            source=c.sources[i],
            opaque_kind=c.opaque[i],
            grad_in=grad_in(i, ()),
            grad_out=grad_out(i, ()),
            executed=(i in executed) if observed else None,
            grad_norm=norms(i),
        )
        for i in topo
    ])  # fmt: skip
    freed = sum(any(_is_freed(v) for v in saved.values()) for saved in c.saved)
    notes = (_freed_note(freed),) if freed else ()
    return Graph(nodes=nodes, roots=tuple(ids[r] for r in roots), notes=notes, run=run or RunInfo())


def graph_roots(c: Collected) -> list[int]:
    """The roots that no other node feeds: a model's logits returned beside the loss computed from
    them are an op of the loss's graph, not a second root (roots come first in backward order)."""
    fed = {j for out in c.edges for j, _ in out if j is not None}
    return [r for r in c.roots if r not in fed] or list(c.roots)


def walk(roots: Sequence[Any]) -> tuple[list[Any], dict[Any, int], list[list[tuple[int | None, int]]]]:
    """BFS from ``roots``: nodes in discovery order, node → index, and per node its edges."""
    order: list[Any] = list(dict.fromkeys(roots))
    index: dict[Any, int] = {n: i for i, n in enumerate(order)}
    edges: list[list[tuple[int | None, int]]] = []
    queue = deque(order)
    while queue:
        out: list[tuple[int | None, int]] = []
        for nxt, nr in queue.popleft().next_functions:
            if nxt is None:
                out.append((None, nr))
                continue
            j = index.get(nxt)
            if j is None:
                j = index[nxt] = len(order)
                order.append(nxt)
                queue.append(nxt)
            out.append((j, nr))
        edges.append(out)
    return order, index, edges


def backward_order(
    seqs: Sequence[int], edges: Sequence[Sequence[tuple[int | None, int]]], roots: Sequence[int]
) -> list[int]:
    """Roots first, then a topological order that prefers later-created nodes (as backward does)."""
    indegree = [0] * len(seqs)
    for out in edges:
        for j, _ in out:
            if j is not None:
                indegree[j] += 1
    ready = [(-seqs[i], i) for i in range(len(seqs)) if indegree[i] == 0]
    heapq.heapify(ready)
    placed = set(roots)
    result = list(roots)
    while ready:
        _, i = heapq.heappop(ready)
        if i not in placed:
            placed.add(i)
            result.append(i)
        for j, _ in edges[i]:
            if j is not None:
                indegree[j] -= 1
                if indegree[j] == 0:
                    heapq.heappush(ready, (-seqs[j], j))
    return result


_NAMES: dict[type, str] = {}


def short_name(node: Any) -> str:
    cls = type(node)
    name = _NAMES.get(cls)
    if name is None:
        name = node.name().rsplit("::", 1)[-1]
        if not saved_mod.is_python_function(node):  # C++ node classes have one name each
            _NAMES[cls] = name
    return name


def _sequence_nr(node: Any) -> int:
    try:
        nr: int = node._sequence_nr()
    except Exception:
        return _NO_SEQ
    return nr if nr < (1 << 63) else _NO_SEQ


def _kind(c: Collected, i: int, is_root: bool) -> NodeKind:
    if c.names[i] == ACCUMULATE_GRAD:
        return "leaf"
    if is_root:
        return "root"
    return "opaque" if c.opaque[i] is not None else "op"


def _opaque_kind(node: Any, name: str) -> OpaqueKind | None:
    kind = _OPAQUE_BY_NAME.get(name)
    if kind is None and saved_mod.is_python_function(node):
        return "compiled" if name.startswith("CompiledFunction") else "custom"
    return kind


_DEVICES: dict[Any, str] = {}
_PARAMETER = torch.nn.Parameter


# OutputMeta and 1-tuples of them, interned like summary.meta_of (few distinct values, one per node).
_OUTPUTS: dict[tuple[Any, ...], tuple[OutputMeta, ...]] = {}


def _outputs(node: Any) -> tuple[OutputMeta, ...]:
    try:
        metas = node._input_metadata
        if len(metas) == 1:
            m = metas[0]
            return _output1(tuple(m.shape), m.dtype, m.device)
        return tuple(_output1(tuple(m.shape), m.dtype, m.device)[0] for m in metas)
    except Exception:  # _input_metadata is private API: degrade to "unknown"
        return ()


def _output1(shape: Any, dtype: Any, device: Any) -> tuple[OutputMeta]:
    key = (shape, dtype, device)
    hit = _OUTPUTS.get(key)
    if hit is None:
        dt = dtype if isinstance(dtype, str) else dtype_name(dtype)
        dev = device if isinstance(device, str) else _device(device)
        if not all(type(d) is int for d in shape):  # a jagged nested tensor's ragged dim: a torch.SymInt
            return (OutputMeta(tuple(d if type(d) is int else -1 for d in shape), dt, dev),)  # -1, as meta_of
        if len(_OUTPUTS) >= 4096:
            _OUTPUTS.clear()
        hit = _OUTPUTS[key] = (OutputMeta(tuple(shape), dt, dev),)
    return hit  # type: ignore[return-value]


def _leaf_outputs(leaf: LeafInfo | None) -> tuple[OutputMeta, ...]:
    # An AccumulateGrad's one "output" is its leaf, already read: skip _input_metadata (pybind, ~2 µs).
    assert leaf is not None
    return _output1(leaf.shape, leaf.dtype, leaf.device)


def _device(device: Any) -> str:
    text = _DEVICES.get(device)
    if text is None:
        text = _DEVICES[device] = str(device)
    return text


def _leaf_info(
    i: int, node: Any, opts: CaptureOptions, summarize_fn: Callable[[torch.Tensor], TensorSummary]
) -> LeafInfo:
    var = node.variable
    grad = var.grad
    if opts.store is not None:
        presaved = opts.presaved.get(node) if opts.presaved else None  # a cell's: read before its backward
        opts.store.offer_leaf(i, var, None if presaved is None else presaved.leaf_version)
        summarize_fn = opts.store.describe
    meta = meta_of(var)
    return LeafInfo.fast(
        name=opts.leaf_names.get(var),
        shape=meta.shape,
        dtype=meta.dtype,
        device=meta.device,
        requires_grad=bool(var.requires_grad),
        grad=None if grad is None else summarize_fn(grad),
        is_parameter=isinstance(var, _PARAMETER),
    )


def _module_of(i: int, c: Collected) -> str | None:
    leaf = c.leaves[i]
    if leaf is not None:
        return module_of_leaf(leaf.name)
    if c.modules is not None:  # observed forward: exact (None: created outside every submodule)
        return c.modules[i]
    return infer_module([c.leaves[j] for j, _ in c.edges[i] if j is not None])


def _saved(
    i: int, node: Any, opts: CaptureOptions, summarize_fn: Callable[[torch.Tensor], TensorSummary]
) -> dict[str, SavedValue]:
    store = opts.store
    if store is None:
        current = saved_mod.read_saved(node, lambda _path, t: summarize_fn(t))
    else:
        current = saved_mod.read_saved(node, lambda path, t: store.offer((i, "saved:" + path), t))
    presaved = opts.presaved.get(node) if opts.presaved else None
    if presaved is None:
        return current
    # Values read before backward freed them win over "freed"; mark tensors as freed since. A custom
    # Function's ctx reads as "saved_tensors[i]" before and as one unavailable "saved_tensors" after.
    merged = dict(current)
    for key, value in presaved.values.items():
        base = key.split("[", 1)[0]
        gone = current.get(key) if key in current else current.get(base)
        if isinstance(gone, Unavailable):
            merged[key] = _mark_freed(value)
            if key != base:
                merged.pop(base, None)
    if store is not None:
        for path, t in presaved.tensors.items():
            attr = path.split("[", 1)[0]
            if isinstance(current.get(attr), Unavailable):
                store.offer((i, "saved:" + path), t, freed=True, version=presaved.versions.get(path))
    return merged


def _mark_freed(value: SavedValue) -> SavedValue:
    if isinstance(value, TensorSummary):
        return replace(value, freed=True)
    if isinstance(value, tuple):
        return tuple(_mark_freed(v) for v in value)
    return value


def _is_freed(value: SavedValue) -> bool:
    return isinstance(value, Unavailable) and value.reason == saved_mod.FREED


def _summary_cache(stats: bool) -> Callable[[torch.Tensor], TensorSummary]:
    """Summarize each distinct tensor once (weights are saved by many nodes)."""
    if not stats:
        return meta_of
    cache: dict[int, tuple[torch.Tensor, TensorSummary]] = {}

    def fn(t: torch.Tensor) -> TensorSummary:
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
