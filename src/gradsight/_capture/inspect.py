"""Everything the inspector shows about one tensor: full statistics, a histogram, a values preview.

Computed on demand, on the tensor's own device; only a block-averaged slice of at most ~128×128
(or 2048 along one dim) values crosses to the browser, never the tensor itself: float32, or float64
when a value does not fit float32 (a float64 tensor holding 1e300 or 1e-300, an integer past 2**24).
Nor is the tensor copied whole on the way: not an expanded one, not a sparse one made dense.
The values view itself is :mod:`.preview`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from ..graph import Graph, SavedValue, TensorSummary
from ..inspection import GradStep, Histogram, Inspection, Preview, Section, TensorView
from .finish import total_norm
from .preview import preview
from .records import Captured
from .store import TensorStore
from .summary import META_NOTE, stat_values, summarize

BINS = 32
HISTOGRAM_SAMPLE = 1_000_000  # values binned at most: a 1-in-k sample beyond (histc is slow on CPU)


def tensor_view(key: str, section: Section, name: str, t: torch.Tensor | None, summary: TensorSummary,
                index: Sequence[int] | None = None) -> TensorView:  # fmt: skip
    """A :class:`TensorView` of ``t``, or of ``summary`` alone when the tensor was not kept."""
    if t is None:
        note = "values not kept (memory budget or freed before capture): statistics only"
        return TensorView(key, section, name, summary, kept=False, note=note)
    if t.is_meta:
        return TensorView(key, section, name, summarize(t, stats=True), kept=False, note=META_NOTE)
    with torch.no_grad():
        full = summarize(t, stats=True, freed=summary.freed)
        try:
            hist = histogram(t, full)
            if t.is_nested:  # its tensors differ in shape: there is no one slice to show
                return TensorView(key, section, name, full, kept=True, histogram=hist,
                                  note=_join(full.note, "no preview of a nested tensor"))  # fmt: skip
            if 0 in t.shape[:-2]:  # no slice of (0, 3, 4) exists to preview ((2, 0, 4) has empty ones)
                return TensorView(key, section, name, full, kept=True, note=f"empty: no values to show (shape "
                                  f"{tuple(t.shape)})")  # fmt: skip
            prev = preview(t, index, bound=_largest(full))
        except Exception as e:  # a preview is a courtesy; the statistics still stand
            return TensorView(key, section, name, full, kept=True, note=f"no preview: {type(e).__name__}: {e}")
    return TensorView(key, section, name, full, kept=True, histogram=hist, preview=prev, note=full.note)


def _largest(s: TensorSummary) -> float:
    """The largest finite |value| the statistics saw (0 when there is none)."""
    return 0.0 if s.min is None or s.max is None else max(abs(s.min), abs(s.max))


def histogram(t: torch.Tensor, s: TensorSummary) -> Histogram | None:
    if s.numel == 0 or (s.min is None and not (s.nan_count or s.inf_count)):
        return None
    # in its own dtype until sampled (a float64 copy of 10M int64 values took 25 ms); an expanded
    # tensor's distinct values, each standing for `repeat` of them
    x, _, repeat = stat_values(t.detach(), convert=False)
    if s.min is None or s.max is None:  # no finite value: only the NaN / ±Inf counters (the view says so)
        return Histogram(min=None, max=None, counts=(0,) * BINS, nan=int(torch.isnan(x).sum()) * repeat,
                         posinf=int(torch.isposinf(x).sum()) * repeat,
                         neginf=int(torch.isneginf(x).sum()) * repeat)  # fmt: skip
    if s.nan_count or s.inf_count:
        nan = int(torch.isnan(x).sum()) * repeat
        posinf = int(torch.isposinf(x).sum()) * repeat
        neginf = int(torch.isneginf(x).sum()) * repeat
        x = x[torch.isfinite(x)]
    else:
        nan = posinf = neginf = 0
    lo, hi = s.min, s.max
    x, stride = sample(x, HISTOGRAM_SAMPLE)
    # float64: histc bins in the tensor's dtype, where max - min of float32 values past ±1.7e38
    # (exploding gradients) is inf: every bin came back empty
    x = x.to(torch.float64)
    if lo == hi:
        counts = [0] * BINS
        counts[BINS // 2] = int(x.numel())
    else:
        k = 1.0
        if not math.isfinite((hi - lo) * BINS):  # histc's (x - min) * bins overflows even float64
            k = 1 / (2 * BINS)  # a power of two: exact for values this big
            x = x * k
        counts = [int(c) for c in torch.histc(x, bins=BINS, min=lo * k, max=hi * k).tolist()]
    return Histogram(min=lo, max=hi, counts=tuple(counts), nan=nan, posinf=posinf, neginf=neginf,
                     stride=stride * repeat)  # fmt: skip


_GOLDEN = (math.sqrt(5) - 1) / 2


def sample(x: torch.Tensor, cap: int) -> tuple[torch.Tensor, int]:
    """About 1 in ``stride`` values of flat ``x``, at most ``cap`` of them, and ``stride``.

    One value of each run of ``stride``, at an offset that follows the golden-ratio sequence
    frac(i·φ): even over the offsets, also over every arithmetic subsequence of runs, so no row or
    column length of the tensor lines up with it (``x[::stride]`` of a (1M, 2) tensor binned its
    first column only). Near-sequential reads (a random gather took 10× as long); no RNG is touched.

    >>> sample(torch.arange(8.0), 4)
    (tensor([0., 3., 4., 7.]), 2)
    """
    n = x.numel()
    stride = max(1, math.ceil(n / cap))
    if stride == 1:
        return x, 1
    runs = torch.arange(math.ceil(n / stride), device=x.device)
    offset = ((runs.to(torch.float64) * _GOLDEN).frac_() * stride).long()
    index = torch.clamp_max_(runs * stride + offset, n - 1)  # the last run may be short
    return x.index_select(0, index), stride


def _join(a: str | None, b: str) -> str:
    return b if a is None else f"{a}; {b}"


# -- a whole node --------------------------------------------------------------------------------


GRADIENTS_NOT_KEPT = (
    "values not kept (big graph: gradsight keeps shapes and gradient norms, and the tensors of the nodes "
    "you inspect in a runnable debugger, by re-running the step)"
)
LIVE_GRADIENTS_NOT_KEPT = (
    "values not kept (big graph: a live debugger keeps shapes and gradient norms of your training steps, and "
    "re-runs nothing when you inspect a node): re-run the step (dbg.rerun(), or Re-run in the view), then "
    "inspect this node in the re-run: a re-run keeps the tensors of the nodes you inspect"
)
CELL_GRADIENTS_NOT_KEPT = (
    "values not kept: a %%gradsight cell keeps the gradients of its last backward call while they and the "
    "saved tensors it kept fit options.keep_all_below, and never the one reaching an AccumulateGrad (its "
    "leaf's .grad shows it)"
)


def not_kept_note(mode: str) -> str:
    """Why a big graph's value is not kept, and what gets it, in the words of the debugger's mode:
    a cell re-runs nothing; a live step is no re-run, and dbg.rerun() makes one that keeps values."""
    return {"cell": CELL_GRADIENTS_NOT_KEPT, "live": LIVE_GRADIENTS_NOT_KEPT}.get(mode, GRADIENTS_NOT_KEPT)


LEAF_GRADIENT_NOT_KEPT = (
    "values not kept: holding the gradient that reaches an AccumulateGrad would force a copy of the "
    "parameter's gradient; its leaf's .grad below shows it"
)
EVICTED = (
    "values released: this debugger's newer runs use its memory budget (memory_budget=, "
    "gradsight.options.memory_budget); the summaries and gradient norms taken at capture remain"
)
PAST_BUDGET = (
    "values not kept: past the memory budget (memory_budget=, gradsight.options.memory_budget); the "
    "statistics shown were taken at capture (a gradient met inside backward: its norm)"
)
CHANGED_SINCE = (
    "changed in place since autograd saved it (an optimizer step on this weight, an in-place op): "
    "these are its values now, not the ones backward used"
)
LEAF_CHANGED_SINCE = (
    "changed in place since the backward shown (an optimizer step, an in-place op): these are its "
    "values now, not the ones that backward used; the node's gradients are the ones it computed"
)


def inspect_node(cap: Captured, node_id: str, history: Sequence[GradStep] = (),
                 missing_gradients: str = GRADIENTS_NOT_KEPT) -> Inspection:  # fmt: skip
    """Every tensor of ``node_id`` as a :class:`TensorView` (``KeyError`` if there is no such node)."""
    node = cap.graph.node(node_id)
    i = cap.index_of.get(node_id, -1)
    store = cap.store
    views: list[TensorView] = []
    for name, value in node.saved.items():
        for path, summary in _tensor_paths(name, value):
            key = "saved:" + path
            t = _kept(store, i, key)
            view = tensor_view(key, "saved", path, t, summary)
            if t is None and store is not None and store.was_released((i, key)):
                view = replace(view, note=EVICTED)
            elif t is None and store is not None and store.over_budget((i, key)):
                view = replace(view, note=PAST_BUDGET)
            elif t is None and summary.std is None and not summary.freed:
                view = replace(view, note=missing_gradients)
            elif store is not None and store.changed((i, key)):
                view = replace(view, note=CHANGED_SINCE)
            views.append(view)
    sections: tuple[tuple[Section, tuple[TensorSummary | None, ...]], ...] = (
        ("grad-in", node.grad_in),
        ("grad-out", node.grad_out),
    )
    for section, grads in sections:
        for k, grad in enumerate(grads):
            if grad is not None:
                key = f"{section}:{k}"
                t = _kept(store, i, key)
                view = tensor_view(key, section, f"{section} {k}", t, grad)
                if t is None and store is not None and store.was_released((i, key)) and node.leaf is None:
                    view = replace(view, note=EVICTED)
                elif t is None and store is not None and store.over_budget((i, key)) and node.leaf is None:
                    view = replace(view, note=PAST_BUDGET)
                elif t is None and node.leaf is not None and section == "grad-in":
                    view = replace(view, note=LEAF_GRADIENT_NOT_KEPT)
                elif t is None and (store is None or store.dropped == 0 or grad.std is None):
                    view = replace(view, note=missing_gradients)
                views.append(view)
    if node.leaf is not None:
        views.extend(_leaf_views(store, i))
    return Inspection(node=node_id, tensors=tuple(views), history=tuple(history))


def as_shown(shown: Graph, cap: Captured) -> Graph:
    """``cap``'s graph, made again to keep a clicked node's tensors, with the gradients of ``shown``
    (the run it reproduced: ``runs.not_reproduced``) wherever it kept no tensor; ``cap.graph`` is set to it.

    Same run, same numbers: a click changes no norm. The clicked node is hooked in the new run where
    the run shown took its norm from its child (``hooks.derivable``: a leaf's, accurate), and a hook's
    one float32 ``vector_norm`` errs by 1e-4 past 256k values (summary._SHOWN). A gradient the new
    run kept has the tensor's accurate norm, which the inspector's statistics show: that one stays."""
    store, before = cap.store, shown.by_id
    nodes = []
    for node in cap.graph.nodes:
        old, i = before.get(node.id), cap.index_of.get(node.id, -1)
        grad_in = _as_shown(node.grad_in, old.grad_in if old else (), store, i, "grad-in")
        grad_out = _as_shown(node.grad_out, old.grad_out if old else (), store, i, "grad-out")
        if old is None or (grad_in == node.grad_in and grad_out == node.grad_out):
            nodes.append(node)
            continue
        norm = old.grad_norm if grad_in == old.grad_in else total_norm(grad_in)
        nodes.append(replace(node, grad_in=grad_in, grad_out=grad_out, grad_norm=norm))
    cap.graph = replace(cap.graph, nodes=tuple(nodes))
    return cap.graph


def _as_shown(new: tuple[TensorSummary | None, ...], old: tuple[TensorSummary | None, ...],
              store: TensorStore | None, i: int, section: str) -> tuple[TensorSummary | None, ...]:  # fmt: skip
    """``new`` with ``old``'s summary in each slot of the same gradient (shape, dtype) whose tensor
    ``store`` did not keep and which has no statistics of its own (a hook's norm only)."""
    out = list(new)
    for k, s in enumerate(new):
        was = old[k] if k < len(old) else None
        if s is None or was is None or s.min is not None or _kept(store, i, f"{section}:{k}") is not None:
            continue
        if (was.shape, was.dtype) == (s.shape, s.dtype):
            out[k] = was
    return tuple(out)


def values_of(cap: Captured, node_id: str, key: str, index: Sequence[int]) -> Preview:
    """The preview of one tensor of a node at another slice ``index`` of its leading dims."""
    cap.graph.node(node_id)
    i = cap.index_of.get(node_id, -1)
    t = _tensor_for(cap, i, key)
    if t is None:
        keys = [v.key for v in inspect_node(cap, node_id).tensors]
        if key not in keys:
            raise LookupError(f"{node_id} has no tensor {key!r}; its tensors: {', '.join(keys) or '(none)'}")
        if cap.store is not None and cap.store.evicted:
            raise LookupError(f"{key} of {node_id}: {EVICTED}")
        raise LookupError(f"{key} of {node_id} is not kept (memory budget, or freed before capture)")
    with torch.no_grad():
        return preview(t, index)


def _tensor_for(cap: Captured, i: int, key: str) -> torch.Tensor | None:
    store = cap.store
    if store is None:
        return None
    if key in ("leaf:value", "leaf:grad"):
        leaf = store.leaf(i)
        if leaf is None:
            return None
        return leaf if key == "leaf:value" else leaf.grad
    return store.get((i, key))


def _kept(store: TensorStore | None, i: int, key: str) -> torch.Tensor | None:
    return None if store is None else store.get((i, key))


def _leaf_views(store: TensorStore | None, i: int) -> list[TensorView]:
    leaf = None if store is None else store.leaf(i)
    if leaf is None:
        return []
    value = tensor_view("leaf:value", "leaf", "value", leaf.detach(), summarize(leaf, stats=False))
    if store is not None and store.leaf_changed(i):
        value = replace(value, note=_join(value.note, LEAF_CHANGED_SINCE))
    views = [value]
    grad = leaf.grad
    if grad is not None:
        views.append(tensor_view("leaf:grad", "leaf", ".grad (now)", grad, summarize(grad, stats=False)))
    return views


def _tensor_paths(name: str, value: SavedValue) -> list[tuple[str, TensorSummary]]:
    """``_saved_indices`` = (None, T) → [("_saved_indices[1]", T)]; iterative, like everything here."""
    out: list[tuple[str, TensorSummary]] = []
    stack: list[tuple[str, SavedValue]] = [(name, value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, TensorSummary):
            out.append((path, v))
        elif isinstance(v, tuple):
            stack.extend(reversed([(f"{path}[{k}]", x) for k, x in enumerate(v)]))
    return out
