"""Summaries of tensors: shape, dtype and a few statistics, computed safely and cheaply.

Safe: empty, integer, bool, complex, sparse, quantized and meta tensors all summarize without
raising (min/max/mean raise or lie on several of them: autograd-facts §4.8, §4.9, pitfall 8).
Cheap: one ``vector_norm``; ``aminmax`` and ``std_mean`` only then; NaN/Inf are counted only
when the norm is not finite (autograd-facts §5.4), and one ``tolist()`` syncs the device once.
Never touches autograd (no_grad) or the RNG.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from ..graph import TensorSummary

_NAMES: dict[object, str] = {}


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``"float32"`` (cached: this runs for every tensor of every node)."""
    return _name(dtype)


def _name(obj: object) -> str:
    text = _NAMES.get(obj)
    if text is None:
        text = _NAMES[obj] = str(obj).removeprefix("torch.")
    return text


# Summaries without statistics, interned: a capture makes one per saved tensor (70k at 50k nodes)
# but sees few distinct (shape, dtype, device, layout); sharing them saves the construction and
# the garbage collector's later scans of every copy. Bounded: cleared when full.
_META: dict[tuple[object, ...], TensorSummary] = {}
_META_MAX = 4096


def meta_of(t: torch.Tensor) -> TensorSummary:
    """``summarize(t, stats=False)``, fast: shape, dtype, device, numel and layout (shared, frozen).

    >>> meta_of(torch.zeros(2, 3)) is meta_of(torch.ones(2, 3))
    True
    """
    key = (t.shape, t.dtype, t.device, t.layout)
    hit = _META.get(key)
    if hit is None:
        if len(_META) >= _META_MAX:
            _META.clear()
        shape, dtype, device, layout = key
        hit = _META[key] = TensorSummary.meta(tuple(shape), _name(dtype), _name(device), t.numel(), _name(layout))
    return hit


def meta_from(shape: tuple[int, ...], dtype: Any, device: Any, numel: int, layout: str = "strided") -> TensorSummary:
    """:func:`meta_of` for a tensor known by its parts (what a hook recorded, or a node's output
    metadata: dtype and device as torch objects or as their names)."""
    key = (shape, dtype, device, layout)
    hit = _META.get(key)
    if hit is None:
        if len(_META) >= _META_MAX:
            _META.clear()
        hit = _META[key] = TensorSummary.meta(tuple(shape), _name(dtype), _name(device), numel, layout)
    return hit


META_NOTE = "a meta tensor: shape and dtype only, it has no values"


def summarize(t: torch.Tensor, *, stats: bool = True, freed: bool = False) -> TensorSummary:
    """Describe ``t``; with ``stats`` also min/max/mean/std/norm and NaN/Inf counts.

    >>> summarize(torch.tensor([1.0, float("nan")])).nan_count
    1
    """
    base = meta_of(t)
    if freed:
        base = replace(base, freed=True)
    if base.device == "meta" and stats:
        return replace(base, note=META_NOTE)
    if not stats or base.numel == 0:
        return base
    try:
        with torch.no_grad():
            values, note = _stat_values(t.detach())
            return _with_stats(base, values, note)
    except Exception as e:  # statistics are a courtesy: never let them break a capture
        return replace(base, note=f"statistics unavailable: {type(e).__name__}: {e}"[:300])


def norm_of(t: torch.Tensor) -> float | None:
    """The 2-norm of any tensor (sparse, complex, integer, quantized), or None (meta, failure).

    >>> norm_of(torch.tensor([3j, 4.0]))
    5.0
    """
    if t.is_meta:
        return None
    try:
        with torch.no_grad():
            return flat_norm(_stat_values(t.detach())[0])
    except Exception:  # a courtesy, like the statistics: never let it break a step
        return None


def _stat_values(t: torch.Tensor) -> tuple[torch.Tensor, str | None]:
    """A flat real floating tensor to take statistics of, and a note on what it stands for."""
    note = None
    if t.layout == torch.sparse_coo:
        t, note = t.coalesce().values(), "statistics over the stored (non-zero) values"
    elif t.layout != torch.strided:
        t, note = t.values(), "statistics over the stored (non-zero) values"
    if t.is_quantized:
        t = t.dequantize()
    if t.is_complex():
        t, note = t.abs(), "statistics of the magnitude |z|"
    if t.dtype != torch.float64:
        t = t.to(torch.float32)
    return t.reshape(-1), note


_CHUNK = 4096
_SERIAL_OK = 1 << 18  # vector_norm's float32 error: 7e-7 at 256k elements, 1e-5 at 1M, 4e-4 at 10M


def flat_norm(x: torch.Tensor) -> float:
    """The 2-norm of a flat real tensor, accurate at any size and for any finite values.

    ``vector_norm`` on CPU adds float32 squares one by one: 1e-5 relative error at 1M elements,
    3.7e-4 at 10M (std follows it). Past 256k elements, norms of 4096-element chunks, then the norm
    of those, err by 1e-7 at the same cost. Squares past float32's range (|x| > 1.8e19: an exploding
    gradient that is still finite) overflow to inf; those are rescaled by the largest magnitude.
    """
    n = x.numel()
    whole = n // _CHUNK * _CHUNK
    if n <= _SERIAL_OK:  # under 1e-6 relative error: one kernel
        norm = float(torch.linalg.vector_norm(x))
    else:
        parts = torch.linalg.vector_norm(x[:whole].view(-1, _CHUNK), dim=1)
        if whole < n:
            parts = torch.cat([parts, torch.linalg.vector_norm(x[whole:]).reshape(1)])
        norm = float(torch.linalg.vector_norm(parts))
    if math.isinf(norm) and bool(torch.isfinite(x).all()):
        scale = x.abs().max()
        norm = float(torch.linalg.vector_norm((x / scale).double()) * scale.double())
    return norm


def _with_stats(base: TensorSummary, x: torch.Tensor, note: str | None) -> TensorSummary:
    if x.numel() == 0:
        return replace(base, note=note)
    norm = flat_norm(x)
    if math.isfinite(norm):
        lo, hi, mean, std = _moments(x, norm)
        return replace(base, min=lo, max=hi, mean=mean, std=std, norm=norm, nan_count=0, inf_count=0, note=note)
    nan_count = int(torch.isnan(x).sum())
    inf_count = int(torch.isinf(x).sum())
    finite = x[torch.isfinite(x)]
    extra = "min/max/mean/std over the finite values"
    note = f"{note}; {extra}" if note else extra
    if finite.numel() == 0:
        return replace(base, nan_count=nan_count, inf_count=inf_count, note=note)
    lo, hi, mean, std = _moments(finite, flat_norm(finite))
    return replace(base, min=lo, max=hi, mean=mean, std=std, nan_count=nan_count, inf_count=inf_count, note=note)


def _moments(x: torch.Tensor, norm: float) -> tuple[float, float, float, float]:
    """min, max, mean and (sample) std from the norm: the variance as E[x²] - mean² costs no extra
    pass (``std_mean`` took 25× as long as ``vector_norm`` on 10M floats). The norm errs by up to
    1e-6 relative, which the difference multiplies by mean²/var: where the spread is under a tenth
    of the mean (var ≤ 1e-2·mean², a LayerNorm weight after training) a second, exact pass decides,
    so std stays within 1e-4."""
    lo, hi = torch.aminmax(x)
    lo_f, hi_f, total = torch.stack([lo, hi, x.sum()]).double().tolist()
    sq = norm
    n = x.numel()
    mean = total / n
    var = sq * sq / n - mean * mean
    if var <= 1e-2 * mean * mean:
        var = float(torch.linalg.vector_norm(x.double() - mean)) ** 2 / n
    std = math.sqrt(max(var, 0.0) * n / (n - 1)) if n > 1 else 0.0
    return lo_f, hi_f, mean, std
