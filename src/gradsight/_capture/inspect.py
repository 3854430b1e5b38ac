"""Everything the inspector shows about one tensor: full statistics, a histogram, a values preview.

Computed on demand, on the tensor's own device; only a block-averaged slice of at most ~128×128
(or 2048 along one dim) values crosses to the browser, never the tensor itself: float32, or float64
when a value does not fit float32 (a float64 tensor holding 1e300 or 1e-300).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F

from ..graph import SavedValue, TensorSummary
from ..inspection import GradStep, Histogram, Inspection, Preview, Section, TensorView
from .records import Captured
from .store import TensorStore
from .summary import META_NOTE, _stat_values, summarize

BINS = 32
MAX_1D = 2048
MAX_2D = 128
HISTOGRAM_SAMPLE = 1_000_000  # values binned at most: a 1-in-k stride beyond (histc is slow on CPU)
F32 = torch.finfo(torch.float32)


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
        if 0 in t.shape[:-2]:  # no slice of (0, 3, 4) exists to preview ((2, 0, 4) has empty ones)
            return TensorView(key, section, name, full, kept=True, note=f"empty: no values to show (shape "
                              f"{tuple(t.shape)})")  # fmt: skip
        try:
            hist = histogram(t, full)
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
    x, _ = _stat_values(t.detach())
    if s.min is None or s.max is None:  # no finite value: only the NaN / ±Inf counters (the view says so)
        return Histogram(min=None, max=None, counts=(0,) * BINS, nan=int(torch.isnan(x).sum()),
                         posinf=int(torch.isposinf(x).sum()), neginf=int(torch.isneginf(x).sum()))  # fmt: skip
    if s.nan_count or s.inf_count:
        nan = int(torch.isnan(x).sum())
        posinf = int(torch.isposinf(x).sum())
        neginf = int(torch.isneginf(x).sum())
        x = x[torch.isfinite(x)]
    else:
        nan = posinf = neginf = 0
    lo, hi = s.min, s.max
    stride = max(1, math.ceil(x.numel() / HISTOGRAM_SAMPLE))
    # float64: histc bins in the tensor's dtype, where max - min of float32 values past ±1.7e38
    # (exploding gradients) is inf: every bin came back empty
    x = x[::stride].to(torch.float64)
    if lo == hi:
        counts = [0] * BINS
        counts[BINS // 2] = int(x.numel())
    else:
        k = 1.0
        if not math.isfinite((hi - lo) * BINS):  # histc's (x - min) * bins overflows even float64
            k = 1 / (2 * BINS)  # a power of two: exact for values this big
            x = x * k
        counts = [int(c) for c in torch.histc(x, bins=BINS, min=lo * k, max=hi * k).tolist()]
    return Histogram(min=lo, max=hi, counts=tuple(counts), nan=nan, posinf=posinf, neginf=neginf, stride=stride)


def preview(t: torch.Tensor, index: Sequence[int] | None = None, bound: float | None = None) -> Preview:
    """A 1-D or 2-D slice of ``t`` (leading dims fixed by ``index``), block-averaged to fit.

    ``bound``, the largest finite |value| of ``t`` when its statistics know it, spares a pass over
    a tensor that holds NaN or ±Inf (see :func:`_finite_means`)."""
    full_shape = tuple(int(d) for d in t.shape)
    x = _real(t.detach())
    lead = max(0, x.dim() - 2)
    idx = tuple(index) if index is not None else (0,) * lead
    if len(idx) != lead:
        raise ValueError(f"index must fix {lead} leading dim(s) of shape {full_shape}, got {list(idx)}")
    for d, (i, n) in enumerate(zip(idx, full_shape, strict=False)):
        if not 0 <= i < n:
            raise IndexError(f"index {i} is out of range for dim {d} of size {n}")
    for i in idx:
        x = x[i]
    block: tuple[int, ...]
    shape: tuple[int, ...]
    if x.dim() == 0:
        values, block, shape = x.reshape(1), (), ()
    elif x.dim() == 1:
        values, block = _pool1d(x, MAX_1D, bound)
        shape = (int(values.numel()),)
    else:
        values, block = _pool2d(x, MAX_2D, bound)
        shape = (int(values.shape[0]), int(values.shape[1]))
    data, dtype = _encode(values.to("cpu"))
    return Preview(shape=shape, full_shape=full_shape, index=idx, block=block, values=data, dtype=dtype)


def _encode(v: torch.Tensor) -> tuple[bytes, Literal["float32", "float64"]]:
    """Little-endian float32 bytes, or float64 ones when float32 would turn a finite value into ±Inf
    (|v| > 3.4e38) or a nonzero one into 0 or a denormal that has lost its digits (|v| < 1.2e-38)."""
    if v.dtype == torch.float64:
        a = v.abs()
        if bool((((a > F32.max) & torch.isfinite(a)) | ((a < F32.tiny) & (a != 0))).any()):
            return v.contiguous().numpy().astype("<f8").tobytes(), "float64"
    return v.to(torch.float32).contiguous().numpy().astype("<f4").tobytes(), "float32"


def _real(t: torch.Tensor) -> torch.Tensor:
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_quantized:
        t = t.dequantize()
    if t.is_complex():
        t = t.abs()
    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


def _pool1d(x: torch.Tensor, cap: int, bound: float | None) -> tuple[torch.Tensor, tuple[int, ...]]:
    b = max(1, math.ceil(x.numel() / cap))
    if b == 1:
        return x, (1,)
    # ceil_mode: the last, partial window averages only the values it has
    return _finite_means(x, lambda y: F.avg_pool1d(y[None, None], b, b, ceil_mode=True)[0, 0], b, bound), (b,)


def _pool2d(x: torch.Tensor, cap: int, bound: float | None) -> tuple[torch.Tensor, tuple[int, ...]]:
    h, w = int(x.shape[0]), int(x.shape[1])
    bh, bw = max(1, math.ceil(h / cap)), max(1, math.ceil(w / cap))
    if bh == bw == 1:
        return x, (1, 1)

    def pool(y: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(y[None, None], (bh, bw), (bh, bw), ceil_mode=True)[0, 0]

    return _finite_means(x, pool, bh * bw, bound), (bh, bw)


def _finite_means(x: torch.Tensor, pool: Callable[[torch.Tensor], torch.Tensor], n: int,
                  bound: float | None) -> torch.Tensor:  # fmt: skip
    """Means of blocks of ``n`` values by ``pool``, also where a block's sum overflows the dtype
    (float32 values past ±3.4e38 / n, float64 ones past ±1.8e308 / n): such cells, ±Inf or NaN
    although every value in them may be finite, are taken again in float64 on values scaled by a
    power of two ≥ n, so the sum stays finite; cells holding a real NaN or ±Inf come out the same.
    ``bound`` (the largest finite |value|, found here when None) tells whether any sum can overflow."""
    fast = pool(x)
    if bool(torch.isfinite(fast).all()):
        return fast
    if bound is None:
        bound = float(x.abs().nan_to_num_(nan=0.0, posinf=0.0).max())
    if 2 * n * bound <= torch.finfo(x.dtype).max:  # no sum can overflow: the NaN / ±Inf cells are real
        return fast
    scale = 2.0 ** math.ceil(math.log2(n))  # a power of two: scaling is exact (bar float64 denormals)
    slow = pool(x.to(torch.float64) / scale) * scale
    return torch.where(torch.isfinite(fast), fast.to(torch.float64), slow)


# -- a whole node --------------------------------------------------------------------------------


GRADIENTS_NOT_KEPT = (
    "values not kept (big graph: gradsight keeps shapes and gradient norms, and the tensors of the nodes "
    "you inspect in a runnable debugger, by re-running the step)"
)
CELL_GRADIENTS_NOT_KEPT = (
    "values not kept: a %%gradsight cell keeps the gradients of its last backward call while they fit "
    "options.keep_all_below, and never the one reaching an AccumulateGrad (its leaf's .grad shows it)"
)


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
    views = [tensor_view("leaf:value", "leaf", "value", leaf.detach(), summarize(leaf, stats=False))]
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
