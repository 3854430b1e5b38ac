"""The values view of one tensor: a 1-D or 2-D slice, block-averaged to at most ~128×128 (or 2048
along one dim) cells, encoded float32 — or float64 when a value does not fit float32 (1e300,
1e-300, an integer past 2**24). Never the tensor copied whole: an expanded one is averaged over its
distinct values, a sparse one from its stored values (moved out of ``inspect.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from ..inspection import Preview
from .summary import WIDE_INTS, compact

MAX_1D = 2048  # cells of a 1-D preview
MAX_2D = 128  # cells per side of a 2-D one
F32 = torch.finfo(torch.float32)


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
    data, dtype = _encode(values.to("cpu"), exact=t.dtype in WIDE_INTS)
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
    if t.dtype in WIDE_INTS:
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
