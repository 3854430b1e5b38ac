"""Hooks on every node of one graph, recording the gradients that flow during backward.

Two levels, because keeping every gradient alive is what makes a hooked backward slow (1.5–4× at
realistic sizes, measured in benchmarks/bench_run.py: the allocator can no longer reuse freed
gradient buffers). Every node gets a prehook that records the gradient's shape and its norm (a 0-d
tensor, no device sync) — but the nodes whose norm is their child's (:func:`derivable`, runnable
runs) and the leaves, which get a tensor hook in live mode and none in runnable runs; only the
nodes in ``keep`` also hand their gradients in and out to the :class:`~.store.TensorStore` (within
its budget) for histograms and previews.

Rules from research/autograd-facts.md §6: every hook returns None and catches everything (an
exception would abort the user's backward); closures capture the node's index, never the node (a
node → hook → closure → node cycle keeps activations alive); the gradient reaching an
``AccumulateGrad`` is not held (that forces a copy of every parameter gradient). All handles are
owned here and removed by :meth:`GradRecorder.close`, also on error.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch

from ..graph import TensorSummary
from .records import Collected
from .store import TensorStore, transformed
from .summary import meta_from, meta_of

ACCUMULATE_GRAD = "AccumulateGrad"
_vector_norm = torch.linalg.vector_norm
_graph_task_id = torch._C._current_graph_task_id
_HALF = (torch.float16, torch.bfloat16)
_LAYOUTS = {torch.strided: "strided", torch.sparse_coo: "sparse_coo", torch.sparse_csr: "sparse_csr"}

# (shape, dtype, device, numel, 0-d norm tensor or None, layout) of one gradient, as recorded in a hook
GradMeta = tuple[tuple[int, ...], Any, Any, int, "torch.Tensor | None", str] | None

# Ops whose backward only moves the gradient's elements (view, transpose, permute, squeeze), copies
# them (clone), negates them or pads them with zeros (select, slice): the gradient into such a node has
# exactly the norm of the one it passes down. Tested op by op in tests/test_derived_norms.py.
NORM_PRESERVING = frozenset({
    "TBackward0", "TransposeBackward0", "TransposeBackward1", "PermuteBackward0", "ViewBackward0",
    "UnsafeViewBackward0", "ReshapeAliasBackward0", "AliasBackward0", "CloneBackward0", "NegBackward0",
    "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2", "UnsqueezeBackward0", "UnsqueezeBackward1",
    "SelectBackward0", "SliceBackward0",
})  # fmt: skip
# Additions and subtractions pass the gradient to each input as it came, negated or times ``alpha``:
# norm-preserving on every input edge when |alpha| is 1 and nothing was broadcast or cast (the input
# has the output's shape and dtype; a broadcast input gets the gradient summed over the broadcast dims).
ELEMENTWISE = frozenset({"AddBackward0", "SubBackward0", "RsubBackward0", "RsubBackward1"})


def derivable(c: Collected, keep: Collection[int], hooked: Collection[int] = ()) -> dict[int, tuple[int, int]]:
    """Nodes that need no hook: node → (child, output) whose recorded gradient has the same norm.

    A node qualifies when its op passes the gradient down with its norm (:data:`NORM_PRESERVING`, one
    input edge; :data:`ELEMENTWISE`, any input edge without broadcast or cast), it has one output, its
    gradients are not kept (``keep``) and it is no root, and the child's output gets its gradient from
    this node alone (then what flows into the child is what this node passed down, and the child ran
    exactly when this node did). Only for runnable runs, whose backward gradsight calls itself: in live
    mode a ``backward(inputs=...)`` or ``autograd.grad`` of the user's may stop at the child, and then
    this node ran although its child did not. Never through a child in ``hooked`` (its input has a
    tensor hook of the user's, which may change the gradient before gradsight's prehook sees it) or a
    module's backward-hook node (its pre-hooks run first too). On a transformer stack a third of the nodes are views and
    transposes: their norm kernels were a third of a hooked backward's extra time (benchmarks/bench_run.py)."""
    consumers = Counter(e for out in c.edges for e in out if e[0] is not None)
    roots = set(c.roots)
    found: dict[int, tuple[int, int]] = {}
    for i, name in enumerate(c.names):
        if i in keep or i in roots or len(c.outputs[i]) != 1:
            continue
        if name in NORM_PRESERVING:
            candidates = c.edges[i] if len(c.edges[i]) == 1 else []
        elif name in ELEMENTWISE and c.saved[i].get("_saved_alpha") in (1, -1):
            out = c.outputs[i][0]
            candidates = [e for e in c.edges[i] if e[0] is not None and _same_tensor_type(c, e, out)]
        else:
            continue
        if min(c.outputs[i][0].shape, default=0) < 0:  # a nested tensor's ragged dim (-1): numel unknown
            continue  # from the shape, and -1 == -1 whatever the tensors' sizes: hooked, as other nodes
        for child, nr in candidates:
            if child is None or child in hooked or c.opaque[child] == "backward-hook":
                continue
            if child not in roots and consumers[(child, nr)] == 1:
                found[i] = (child, nr)
                break
    return found


def _same_tensor_type(c: Collected, edge: tuple[int | None, int], out: Any) -> bool:
    child, nr = edge
    outs = c.outputs[child] if child is not None else ()
    return nr < len(outs) and outs[nr].shape == out.shape and outs[nr].dtype == out.dtype


class GradRecorder:
    """Install with :meth:`install`; after backward read :meth:`summaries`, ``executed``, ``errors``."""

    def __init__(self, store: TensorStore, keep: Collection[int] | None = None,
                 on_first: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.store = store
        self.keep = keep if keep is not None else ()  # node indices whose gradients are kept
        self.meta: dict[int, tuple[GradMeta, ...]] = {}
        self.grad_in: dict[int, tuple[TensorSummary | None, ...]] = {}  # kept nodes (and leaves)
        self.grad_out: dict[int, tuple[TensorSummary | None, ...]] = {}
        self.executed: set[int] = set()
        self.derived: dict[int, tuple[int, int]] = {}  # not hooked: see derivable() and finish.py
        self.errors: list[str] = []
        # Called inside the first hook of a backward; again in the next backward's if that one's end
        # never came (it raised: a KeyboardInterrupt in a user's hook, and the engine drops the
        # callbacks queued in it) and the recorder is still open (not finished).
        self._on_first = on_first
        self._handles: list[Any] = []
        self._lock = threading.Lock()  # two backward calls may interleave hooks (pitfall 9)
        self._closed = False
        self._fresh: list[torch.Tensor] = []  # leaf tensors whose hook dict gradsight's hook created
        self._task = -1  # graph task id of the backward that last ran a node of this graph
        self._first_task = -1  # graph task id whose first hook called on_first

    def install(self, order: Sequence[Any], names: Sequence[str], *, leaves: bool = True,
                derived: dict[int, tuple[int, int]] | None = None) -> None:  # fmt: skip
        """Hook every node of ``order``, except the ``derived`` ones (:func:`derivable`: their norms
        are their children's) and, with ``leaves=False``, the ``AccumulateGrad`` nodes (a
        ``torch.autograd.grad`` with respect to the leaves never runs them: their hooks would never
        fire, and installing and removing them was a tenth of a 1k-node run's hook cost). With
        ``leaves=True`` a leaf's hook goes on the leaf tensor, not on its ``AccumulateGrad`` node:
        tensor hooks also fire for the gradients ``torch.autograd.grad`` returns (live mode)."""
        self.derived = derived or {}
        for i, node in enumerate(order):
            leaf = names[i] == ACCUMULATE_GRAD
            if (leaf and not leaves) or i in self.derived:
                continue
            tensor = getattr(node, "variable", None) if leaf else None
            if tensor is not None and tensor.requires_grad:
                if tensor._backward_hooks is None:  # put back to None on close, not an empty dict
                    self._fresh.append(tensor)
                self._handles.append(tensor.register_hook(self._tensor_hook(self._pre_hook(i, False))))
                continue
            kept = i in self.keep and not leaf  # never the gradient reaching AccumulateGrad (pitfall 1)
            self._handles.append(node.register_prehook(self._pre_hook(i, kept)))
            if kept:
                self._handles.append(node.register_hook(self._post_hook(i)))

    def close(self) -> None:
        self._closed = True
        handles, self._handles = self._handles, []  # each removed once, should two threads close it
        for h in handles:
            h.remove()
        # A tensor that had no hook dict before gets None back (torch keeps a hook wrapper on the
        # tensor as long as the attribute is set): exactly as before, unless a hook of the user's came meanwhile.
        fresh, self._fresh = self._fresh, []
        for t in fresh:
            if t._backward_hooks is not None and not t._backward_hooks:
                t._backward_hooks = None

    def summaries(self) -> dict[int, tuple[TensorSummary | None, ...]]:
        """Gradients into every executed node: shape, dtype and norm (after backward: one sync)."""
        return summaries_of(self.meta)

    def _first(self, task: int) -> None:
        with self._lock:
            fn = self._on_first if self._first_task != task else None
            self._first_task = task
        if fn is not None:
            fn()

    def _pre_hook(self, i: int, keep: bool) -> Any:
        def hook(grad_outputs: Sequence[torch.Tensor | None]) -> None:
            if self._closed:
                return
            try:
                task = self._task = _graph_task_id()  # the backward running this graph (see _tensor_hook)
                if self._on_first is not None and task != self._first_task:
                    self._first(task)
                metas = tuple(grad_meta(g) for g in grad_outputs)
                kept = self._keep(i, "grad-in", grad_outputs) if keep else None
                with self._lock:
                    self.executed.add(i)
                    self.meta[i] = metas
                    if kept is not None:
                        self.grad_in[i] = kept
            except Exception as e:
                self._error(i, e)
            return

        return hook

    def _tensor_hook(self, pre_hook: Callable[[Sequence[torch.Tensor | None]], None]) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            # A leaf is shared by every graph that uses it: only the backward that ran this graph's
            # nodes (the root's hook fires first) counts, not gradsight's own runs or other losses.
            if _graph_task_id() == self._task:
                pre_hook((grad,))

        return hook

    def _post_hook(self, i: int) -> Any:
        def hook(grad_inputs: Sequence[torch.Tensor | None], grad_outputs: Sequence[torch.Tensor | None]) -> None:
            if self._closed:
                return
            try:
                kept = self._keep(i, "grad-out", grad_inputs)
                with self._lock:
                    self.grad_out[i] = kept
            except Exception as e:
                self._error(i, e)
            return

        return hook

    def _keep(self, i: int, kind: str, grads: Sequence[torch.Tensor | None]) -> tuple[TensorSummary | None, ...]:
        # eager=False: no statistics inside a hook (3-13x the backward); finish.py takes them after
        return tuple(
            None if g is None else self.store.offer((i, f"{kind}:{k}"), g, eager=False) for k, g in enumerate(grads)
        )

    def _error(self, i: int, e: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"node {i}: {type(e).__name__}: {e}")


def summaries_of(meta: dict[int, tuple[GradMeta, ...]]) -> dict[int, tuple[TensorSummary | None, ...]]:
    """What hooks recorded (:func:`grad_meta` per gradient) as summaries: shape, dtype and norm,
    with one device sync for all the norms."""
    norms = [m[4] for metas in meta.values() for m in metas if m is not None and m[4] is not None]
    try:
        values: Iterator[float | None] = iter(torch.stack([n.float().cpu() for n in norms]).tolist() if norms else [])
    except RuntimeError:  # a norm with no storage (a gradient a functorch transform batched): one at a time
        values = iter([_value(n) for n in norms])
    out: dict[int, tuple[TensorSummary | None, ...]] = {}
    for i, metas in meta.items():
        row: list[TensorSummary | None] = []
        for m in metas:
            if m is None:
                row.append(None)
                continue
            s = meta_from(m[0], m[1], m[2], m[3], m[5])
            value = next(values) if m[4] is not None else None
            row.append(s if value is None else with_norm(s, value))
        out[i] = tuple(row)
    return out


NAN_NORM = "norm NaN: a NaN in this gradient (its values were not kept to count them)"
INF_NORM = "norm inf: ±Inf in this gradient, or finite values so big that their squares overflow"


def with_norm(s: TensorSummary, norm: float) -> TensorSummary:
    """``s`` with ``norm``, and what a norm that is not finite tells."""
    return s.with_norm(norm) if math.isfinite(norm) else _nonfinite(s, norm)


def _nonfinite(s: TensorSummary, norm: float) -> TensorSummary:
    """A hook's norm that is not finite, and what it tells (the wire sends the norm as null): NaN
    and ±Inf are not counted where the gradient is not kept, but a NaN norm means a NaN."""
    return replace(s, norm=norm, note=NAN_NORM if math.isnan(norm) else INF_NORM)


def _value(norm: torch.Tensor) -> float | None:
    try:
        return float(norm.float().cpu())
    except RuntimeError:
        return None


def grad_meta(g: torch.Tensor | None) -> GradMeta:
    """Shape, dtype, device, numel, the norm as a 0-d tensor (no sync) and the layout: what a hook
    records."""
    if g is None:
        return None
    numeric = g.dtype.is_floating_point or g.dtype.is_complex
    try:  # free unless it raises (zero-cost exceptions): a nested tensor's shape and norm
        if not numeric or not g.numel() or g.is_meta or transformed(g):  # a vmap's batched gradient: no norm
            norm = None
        elif g.layout != torch.strided:  # sparse (nn.Embedding(sparse=True)), jagged: its stored values
            norm = _vector_norm(g.coalesce().values() if g.layout == torch.sparse_coo else g.values())
            s = meta_of(g)  # a jagged tensor's ragged dim: -1, not a symbolic size JSON cannot take
            return (s.shape, g.dtype, g.device, s.numel, norm, s.layout)
        elif g.dtype in _HALF:  # in float32: a float16 norm overflows at 65504 (and it is faster)
            norm = _vector_norm(g, dtype=torch.float32)
        else:
            norm = _vector_norm(g)
        return (tuple(g.shape), g.dtype, g.device, g.numel(), norm, _LAYOUTS.get(g.layout, str(g.layout)))
    except (RuntimeError, NotImplementedError):
        if not g.is_nested:
            raise
    # a nested tensor of strided layout: reading its shape raises (ragged dims), and so does vector_norm
    s = meta_of(g)
    return (s.shape, g.dtype, g.device, s.numel, _vector_norm(g.values()) if numeric else None, s.layout)
