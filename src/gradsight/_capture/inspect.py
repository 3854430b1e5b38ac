"""Everything the inspector shows about one tensor: full statistics, a histogram, a values preview.

Computed on demand, on the tensor's own device; only a block-averaged slice of at most ~128×128
(or 2048 along one dim) values crosses to the browser, never the tensor itself: float32, or float64
when a value does not fit float32 (a float64 tensor holding 1e300 or 1e-300, an integer past 2**24).
Nor is the tensor copied whole on the way: not an expanded one, not a sparse one made dense.
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
from .summary import _WIDE_INTS, META_NOTE, _stat_values, compact, summarize

BINS = 32
MAX_1D = 2048
MAX_2D = 128
HISTOGRAM_SAMPLE = 1_000_000  # values binned at most: a 1-in-k sample beyond (histc is slow on CPU)
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
    x, _, repeat = _stat_values(t.detach(), convert=False)
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


def preview(t: torch.Tensor, index: Sequence[int] | None = None, bound: float | None = None) -> Preview:
    """A 1-D or 2-D slice of ``t`` (leading dims fixed by ``index``), block-averaged to fit.

    Never a copy of the whole tensor: an expanded slice is averaged on its distinct values
    (:func:`~.summary.compact`), a sparse one from its stored values (:func:`_sparse_cells`).
    ``bound``, the largest finite |value| of ``t`` when its statistics know it, spares a pass over
    a tensor that holds NaN or ±Inf (see :func:`_finite_means`)."""
    full_shape = tuple(int(d) for d in t.shape)
    lead = max(0, len(full_shape) - 2)
    idx = tuple(index) if index is not None else (0,) * lead
    if len(idx) != lead:
        raise ValueError(f"index must fix {lead} leading dim(s) of shape {full_shape}, got {list(idx)}")
    for d, (i, n) in enumerate(zip(idx, full_shape, strict=False)):
        if not 0 <= i < n:
            raise IndexError(f"index {i} is out of range for dim {d} of size {n}")
    rest = full_shape[lead:]
    x = t.detach()
    if x.layout != torch.strided:
        values, block = _sparse_cells(x, idx, rest)
    else:
        for i in idx:
            x = x[i]
        values, block = _cells(_real(compact(x)[0]), rest, bound)
    data, dtype = _encode(values.to("cpu"), exact=t.dtype in _WIDE_INTS)
    shape = tuple(int(n) for n in values.shape)
    return Preview(shape=shape, full_shape=full_shape, index=idx, block=block, values=data, dtype=dtype)


def _encode(v: torch.Tensor, exact: bool = False) -> tuple[bytes, Literal["float32", "float64"]]:
    """Little-endian float32 bytes, or float64 ones when float32 would turn a finite value into ±Inf
    (|v| > 3.4e38) or a nonzero one into 0 or a denormal that has lost its digits (|v| < 1.2e-38), or
    (``exact``: an integer tensor's values) round one (float32 holds integers exactly up to 2**24)."""
    v = v.contiguous().reshape(-1)
    if v.dtype == torch.float64:
        a = v.abs()
        lost = ((a > F32.max) & torch.isfinite(a)) | ((a < F32.tiny) & (a != 0))
        if exact:
            lost |= v.to(torch.float32).to(torch.float64) != v
        if bool(lost.any()):
            return v.numpy().astype("<f8").tobytes(), "float64"
    return v.to(torch.float32).numpy().astype("<f4").tobytes(), "float32"


def _real(t: torch.Tensor) -> torch.Tensor:
    """Real values as float32, or float64 (float64 ones, and integers past float32's 2**24)."""
    if t.is_quantized:
        t = t.dequantize()
    if t.is_complex():
        t = t.abs()
    if t.dtype in _WIDE_INTS:
        return t.to(torch.float64)
    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


def _cells(x: torch.Tensor, full: tuple[int, ...], bound: float | None) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Block means of a 0-, 1- or 2-D slice ``x`` of sizes ``full`` into at most MAX_1D or MAX_2D²
    cells, and the block sizes. A dim where ``x`` has size 1 and ``full`` more was compacted (an
    expansion): its cells all equal ``x``'s, averaged once and expanded."""
    if not full:
        return x, ()
    blocks, cells = _blocks(full)
    kernel = tuple(1 if m != n else b for m, n, b in zip(x.shape, full, blocks, strict=True))
    if max(kernel) > 1:
        x = _finite_means(x, lambda y: _avg(y, kernel), math.prod(kernel), bound)
    return x.expand(cells), blocks


def _blocks(full: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Block sizes that fit ``full`` into at most MAX_1D or MAX_2D² cells, and the cells per dim."""
    cap = MAX_1D if len(full) == 1 else MAX_2D
    blocks = tuple(max(1, math.ceil(n / cap)) for n in full)
    return blocks, tuple(math.ceil(n / b) for n, b in zip(full, blocks, strict=True))


def _avg(y: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    # ceil_mode: the last, partial window averages only the values it has
    if len(kernel) == 1:
        return F.avg_pool1d(y[None, None], kernel, kernel, ceil_mode=True)[0, 0]
    return F.avg_pool2d(y[None, None], kernel, kernel, ceil_mode=True)[0, 0]


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


def _sparse_cells(t: torch.Tensor, idx: tuple[int, ...], full: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:
    """:func:`_cells` of the slice ``idx`` of a sparse tensor, from its stored values alone: each adds
    itself over its block's size to its cell (so no sum overflows). ``to_dense()`` of an
    ``nn.Embedding(1M, 16, sparse=True)`` gradient allocated 64 MB to show three rows."""
    s = (t if t.layout == torch.sparse_coo else t.to_sparse()).coalesce()  # CSR, BSR...: COO
    ind, val = s.indices(), s.values()
    if val.dim() > 1 and len(idx) <= ind.shape[0]:  # hybrid, sliced in its sparse dims only
        return _hybrid_cells(ind, val, idx, full)
    if val.dim() > 1:  # hybrid: dense dims inside the values; give every stored number its full index
        dense = [torch.arange(n, device=ind.device) for n in val.shape[1:]]
        grid = torch.stack(torch.meshgrid(*dense, indexing="ij")).reshape(len(dense), -1)
        ind = torch.cat([ind.repeat_interleave(grid.shape[1], dim=1), grid.repeat(1, ind.shape[1])])
        val = val.reshape(-1)
    mask = torch.ones(val.shape, dtype=torch.bool, device=val.device)
    for d, i in enumerate(idx):
        mask &= ind[d] == i
    ind, val = ind[len(idx) :, mask], _real(val[mask]).to(torch.float64)
    blocks, cells = _blocks(full)
    flat = torch.zeros(val.shape, dtype=torch.long, device=val.device)
    size = torch.ones(val.shape, dtype=torch.float64, device=val.device)
    for d, (n, b, c) in enumerate(zip(full, blocks, cells, strict=True)):
        cell = ind[d] // b
        flat = flat * c + cell
        size *= torch.clamp(n - cell * b, max=b)  # the last block of a dim may be partial
    out = torch.zeros(math.prod(cells), dtype=torch.float64, device=val.device)
    return out.index_add_(0, flat, val / size).reshape(cells), blocks


def _hybrid_cells(ind: torch.Tensor, val: torch.Tensor, idx: tuple[int, ...],
                  full: tuple[int, ...]) -> tuple[torch.Tensor, tuple[int, ...]]:  # fmt: skip
    """:func:`_sparse_cells` of a hybrid tensor (an embedding's gradient: sparse rows of dense values):
    each stored row's dense values are pooled into their cells first, then added to their row's cells.
    Giving every number its own index took 6× the time and 2.6× the memory of ``to_dense()``."""
    if idx:
        keep = torch.ones(ind.shape[1], dtype=torch.bool, device=ind.device)
        for d, i in enumerate(idx):
            keep &= ind[d] == i
        ind, val = ind[len(idx) :, keep], val[keep]
    val = _real(val).to(torch.float64)
    blocks, cells = _blocks(full)
    k = ind.shape[0]  # sparse dims left; the rest of ``full`` is the values' dense dims
    sums, size = val, torch.ones((), dtype=torch.float64, device=val.device)
    for d in range(k, len(full)):  # block sums along each dense dim, zero-padded to whole blocks
        n, b, c = full[d], blocks[d], cells[d]
        axis = 1 + d - k
        if c * b > n:
            pad = list(sums.shape)
            pad[axis] = c * b - n
            sums = torch.cat([sums, sums.new_zeros(pad)], dim=axis)
        shape = list(sums.shape)
        sums = sums.reshape(*shape[:axis], c, b, *shape[axis + 1 :]).sum(axis + 1)
        last = torch.full((c,), float(b), dtype=torch.float64, device=val.device)
        last[-1] = n - (c - 1) * b  # the last block of a dim may be partial
        size = size * last.reshape([c if j == axis else 1 for j in range(sums.dim())])
    flat = torch.zeros(ind.shape[1], dtype=torch.long, device=val.device)
    rows = torch.ones(ind.shape[1], dtype=torch.float64, device=val.device)
    for d in range(k):
        cell = ind[d] // blocks[d]
        flat = flat * cells[d] + cell
        rows *= torch.clamp(full[d] - cell * blocks[d], max=blocks[d])
    means = (sums / size / rows.reshape(-1, *([1] * (sums.dim() - 1)))).reshape(len(flat), -1)
    # rows into their cells: a sparse one-hot product (index_add_ of 7.5k rows of 128 took 36 ms, this 0.4)
    m = len(flat)
    onehot = torch.sparse_coo_tensor(torch.stack([flat, torch.arange(m, device=flat.device)]),
                                     torch.ones(m, dtype=torch.float64, device=val.device),
                                     (math.prod(cells[:k]), m), check_invariants=False)  # fmt: skip
    return torch.sparse.mm(onehot, means).reshape(cells), blocks


def _join(a: str | None, b: str) -> str:
    return b if a is None else f"{a}; {b}"


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
