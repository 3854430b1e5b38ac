"""Summaries of tensors: shape, dtype and a few statistics, computed safely and cheaply.

Safe: empty, integer, bool, complex, sparse, quantized, nested and meta tensors all summarize
without raising (min/max/mean raise or lie on several of them: autograd-facts §4.8, §4.9, pitfall 8).
Accurate: sums in float64, a second pass where the spread is small next to the mean, rescaling where
squares leave the dtype's range; integers past 2**24 in float64. Cheap: a chunked ``vector_norm``,
``aminmax`` and a chunked sum (3 ms on 10M floats); NaN/Inf are counted only when the norm is not
finite (autograd-facts §5.4); an expanded tensor costs its storage, not its size (:func:`compact`).
Never touches autograd (no_grad) or the RNG.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from ..graph import TensorSummary
from .summary_small import FINITE_NOTE, OVERFLOW_NOTE, SMALL, small_stats

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
    try:
        key = (t.shape, t.dtype, t.device, t.layout)
    except RuntimeError:  # a nested tensor of strided layout has no sizes
        return _nested_meta(t)
    hit = _META.get(key)
    if hit is None:
        if t.is_nested:  # jagged: t.shape holds a symbolic ragged size, which JSON cannot take
            return _nested_meta(t)
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


def _nested_meta(t: torch.Tensor) -> TensorSummary:
    """A nested tensor's summary: -1 for each ragged dim (``t.size(d)`` raises there, or is symbolic)."""
    shape = []
    for d in range(t.dim()):
        try:
            n = t.size(d)
        except RuntimeError:
            n = -1
        shape.append(n if isinstance(n, int) else -1)
    meta = TensorSummary.meta(tuple(shape), _name(t.dtype), _name(t.device), int(t.numel()), _name(t.layout))
    return replace(meta, note=NESTED_NOTE % t.size(0))


META_NOTE = "a meta tensor: shape and dtype only, it has no values"


NESTED_NOTE = "a nested tensor of %d tensors: -1 marks a ragged dim (its tensors differ in size there)"


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
            values, note, repeat = stat_values(t.detach())
            note = _join(base.note, note)
            if 0 < values.numel() <= SMALL:  # min/max/mean/std in Python: the norm's the only kernel
                return small_stats(base, values, note, repeat, flat_norm(values))
            return _with_stats(base, values, note, repeat)
    except Exception as e:  # statistics are a courtesy: never let them break a capture
        return replace(base, note=f"statistics unavailable: {type(e).__name__}: {e}"[:300])


def norm_of(t: torch.Tensor, *, tiny: bool = False) -> float | None:
    """The 2-norm of any tensor (sparse, complex, integer, quantized, expanded), or None (meta, failure).
    ``tiny``: its float32 norm is known to be 0 (a hook's): go straight to the rescaled norm.

    >>> norm_of(torch.tensor([3j, 4.0]))
    5.0
    """
    if t.is_meta:
        return None
    try:
        if not tiny and t.dtype in _PLAIN and t.layout is torch.strided and not t.is_nested:
            n = t.numel()  # the common case, a dense float gradient (a kept node's, after every run): one kernel
            if 0 < n <= _SHOWN and 0 not in t.stride():
                norm = float(torch.linalg.vector_norm(t.detach()))
                if math.isfinite(norm) and norm >= _underflow_floor(n, t.dtype):
                    return norm
                tiny = math.isfinite(norm)  # squares underflowed (a vanishing gradient): flat_norm's would too
        with torch.no_grad():
            x, _, repeat = stat_values(t.detach())
            return (_rescaled_norm(x, _SHOWN) if tiny else flat_norm(x, _SHOWN)) * math.sqrt(repeat)
    except Exception:  # a courtesy, like the statistics: never let it break a step
        return None


_PLAIN = {torch.float32, torch.float64}
# float32 rounds integers past 2**24 (16,777,217 reads 16,777,216): these go to float64, exact to 2**53
WIDE_INTS = {getattr(torch, n) for n in ("int32", "int64", "uint32", "uint64") if hasattr(torch, n)}
# dtypes that isnan, isposinf and index_select take as they are (not float8, not uint16-64)
_NATIVE = {torch.float16, torch.bfloat16, torch.float32, torch.int8, torch.int16, torch.int32, torch.int64,
           torch.uint8, torch.bool}  # fmt: skip


def stat_values(t: torch.Tensor, convert: bool = True) -> tuple[torch.Tensor, str | None, int]:
    """A flat real floating tensor to take statistics of (``convert=False``: real, in its own dtype),
    a note on what it stands for, and how many times each of its values stands in ``t`` (see
    :func:`compact`)."""
    note = None
    repeat = 1
    if t.is_nested:
        t = t.values()  # every component's values, in one buffer
    elif t.layout == torch.sparse_coo:
        t, note = t.coalesce().values(), "statistics over the stored (non-zero) values"
    elif t.layout != torch.strided:
        t, note = t.values(), "statistics over the stored (non-zero) values"
    else:
        t, repeat = compact(t)
    if t.is_quantized:
        t = t.dequantize()
    if t.is_complex():
        t, note = t.abs(), "statistics of the magnitude |z|"
    if t.dtype != torch.float64 and (convert or t.dtype not in _NATIVE):
        t = t.to(torch.float64 if t.dtype in WIDE_INTS else torch.float32)
    return t.reshape(-1), note, repeat


def compact(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t`` without the repeats of a stride-0 expansion (``x.expand(...)``, the gradient of a sum),
    and how many times each of its values repeats in ``t``: statistics, histograms and previews of an
    expanded tensor are those of its distinct values, at the cost of its storage, not of its size.

    >>> compact(torch.ones(3).expand(4, 3))[0].shape, compact(torch.ones(3).expand(4, 3))[1]
    (torch.Size([1, 3]), 4)
    """
    repeat = 1
    for d, (n, step) in enumerate(zip(t.shape, t.stride(), strict=True)):
        if step == 0 and n > 1:
            t, repeat = t.narrow(d, 0, 1), repeat * n
    return t, repeat


_CHUNK = 4096  # values per float32 partial sum (_sum)
_ROW = 64  # squares per float32 partial norm (flat_norm)
_SERIAL = 1024  # values one vector_norm adds up alone: 4e-7 relative error at most
# A norm shown as a number (a leaf's gradient, after every run: 400 of them in a 200-layer MLP) needs
# no std-grade accuracy: one vector_norm up to 256k values errs by 1e-4 at most (equal values; 7e-7
# for random ones), half the cost of the rows below.
_SHOWN = 1 << 18


def flat_norm(x: torch.Tensor, serial: int = _SERIAL) -> float:
    """The 2-norm of a flat real tensor, accurate at any size and for any finite values.

    ``vector_norm`` adds float32 squares one by one: 2e-6 relative error at 4096 equal values, 1e-4
    at 256k (std follows it). Past 1024 values, norms of 64-value rows, then of those norms, and so
    on (three levels at 10M values), err by under 1e-7 at about the same cost. Squares past the dtype's
    range overflow to inf (float32 values past 1.8e19: an exploding gradient that is still finite)
    or underflow to 0 (values under 1e-19: a vanishing one, whose norm read 0); those are rescaled by
    the largest magnitude. ``serial``: how many values one ``vector_norm`` may add alone.
    """
    n = x.numel()
    parts = x
    while parts.numel() > serial:
        whole = parts.numel() // _ROW * _ROW
        rows = torch.linalg.vector_norm(parts[:whole].view(-1, _ROW), dim=1)
        parts = torch.cat([rows, parts[whole:]]) if whole < parts.numel() else rows  # the tail's values as they are
    norm = float(torch.linalg.vector_norm(parts))
    if (math.isinf(norm) and bool(torch.isfinite(x).all())) or norm < _underflow_floor(n, x.dtype):
        return _rescaled_norm(x, serial)
    return norm


# Squares under the smallest normal number are subnormal (gradual underflow: each rounds by at most
# the smallest subnormal, 2**-149 in float32), and those under half of that are 0. Past a norm of
# 1e3·sqrt(n·2**-149) what the n squares lost is under 1e-6 of norm²: 9.6e-18 at 65k values (equal
# values of 1e-21, norm 3.7e-19, err by 1.2e-4; of 1e-22 by 5e-3, and of 1e-25 read 0).
_LEAST = {torch.float64: 2.0**-1074, torch.complex128: 2.0**-1074}


def _underflow_floor(n: int, dtype: torch.dtype) -> float:
    """The smallest float32 (float64 for those dtypes) norm of ``n`` values that lost nothing to underflow."""
    return 1e3 * math.sqrt(n * _LEAST.get(dtype, 2.0**-149))


def _rescaled_norm(x: torch.Tensor, serial: int = _SERIAL) -> float:
    """The norm of values whose squares over- or underflow: scaled by a power of two (exact) that
    brings the largest magnitude near 1, in ``x``'s own dtype (a float64 copy took 6× as long)."""
    lo, hi = torch.aminmax(x)
    top = max(-float(lo), float(hi))  # 0: every value is 0 (a dead layer's gradient: the common case here)
    if not top > 0 or not math.isfinite(top):
        return 0.0 if top == 0 else math.inf
    shift = -math.frexp(top)[1]  # top · 2**shift in [0.5, 1): squares neither overflow nor lose the norm
    step = 100 if x.dtype != torch.float64 else 1000  # 2**step itself must fit the dtype (float32: 2**127)
    for _ in range(abs(shift) // step):
        x = x * 2.0 ** math.copysign(step, shift)
    scaled = flat_norm(x * 2.0 ** (int(math.copysign(abs(shift) % step, shift))), serial)
    try:
        return math.ldexp(scaled, -shift)
    except OverflowError:  # finite float64 values whose norm is past 1.8e308
        return math.inf


def underflowed(norm: float | None, t: torch.Tensor) -> bool:
    """Is ``norm``, a backward hook's one ``vector_norm`` of ``t``, finite but so small that squares
    may have underflowed (0 included: a dead layer's gradient, or values under 1e-19)? Then the
    rescaled norm is the one to take (``norm_of(t, tiny=True)``): another plain ``vector_norm`` would
    underflow the same way."""
    return norm is not None and math.isfinite(norm) and norm < _underflow_floor(t.numel(), t.dtype)


def hook_norm_holds(norm: float | None, t: torch.Tensor) -> bool:
    """Is ``norm``, a backward hook's one ``vector_norm`` of ``t`` (float32 at least), what
    :func:`norm_of` would give? Up to :data:`_SHOWN` dense values, unless it is not finite or so
    small that squares may have underflowed: then :func:`norm_of` must take it again (a kernel per
    kept gradient after every run otherwise)."""
    if norm is None or not math.isfinite(norm) or t.layout is not torch.strided or t.is_nested:
        return False
    n = t.numel()
    return n <= _SHOWN and norm >= _underflow_floor(n, t.dtype)


def _with_stats(base: TensorSummary, x: torch.Tensor, note: str | None, repeat: int) -> TensorSummary:
    if x.numel() == 0:
        return replace(base, note=note)
    norm = flat_norm(x)
    nan_count = inf_count = 0
    finite = x
    if not math.isfinite(norm):  # NaN/Inf (counted), or finite values whose norm overflows float64
        nan_count = int(torch.isnan(x).sum()) * repeat
        inf_count = int(torch.isinf(x).sum()) * repeat
        if nan_count or inf_count:
            finite = x[torch.isfinite(x)]
            note = _join(note, FINITE_NOTE)
        else:
            note = _join(note, OVERFLOW_NOTE)
        if finite.numel() == 0:
            return replace(base, nan_count=nan_count, inf_count=inf_count, note=note)
    shown = norm * math.sqrt(repeat) if math.isfinite(norm) else None
    lo, hi, mean, sd = _moments(finite, norm if shown is not None else flat_norm(finite))
    n = finite.numel() * repeat
    std = sd * math.sqrt(n / (n - 1)) if n > 1 else 0.0
    return replace(base, min=lo, max=hi, mean=mean, std=std, norm=shown, nan_count=nan_count, inf_count=inf_count,
                   note=note)  # fmt: skip


def _moments(x: torch.Tensor, norm: float) -> tuple[float, float, float, float]:
    """min, max, mean and population std of finite values ``x`` of 2-norm ``norm``.

    The variance as E[x²] - mean² costs no extra pass (``std_mean`` took 25× as long as
    ``vector_norm`` on 10M floats); the mean is a float64 sum of float32 chunk sums (:func:`_sum`).
    Both err by ~1e-7 relative, which the difference multiplies by mean²/var: where the spread is
    under a tenth of the mean (var ≤ 1e-2·mean², a LayerNorm weight after training) a second pass
    over the deviations decides (:func:`_centered`), so std stays within 1e-4. Values whose squares
    or sums would leave the dtype's range are taken in float64, scaled by a power of two (exact)."""
    lo, hi = torch.stack(list(torch.aminmax(x))).double().tolist()
    if lo == hi:  # a constant: exact, whatever the sums' rounding
        return lo, hi, lo, 0.0
    n = x.numel()
    big = max(-lo, hi)
    k = 0  # x is scaled by 2**k
    if x.dtype != torch.float64 and big > 2.0**100:  # float32 chunk sums and x - mean overflow past 3.4e38
        x = x.double()
        norm = flat_norm(x)
    elif x.dtype == torch.float64 and not 2.0**-400 < big < 2.0**400:  # norm² leaves float64
        k = -math.frexp(big)[1]
        x = x * math.ldexp(1.0, k // 2) * math.ldexp(1.0, k - k // 2)  # two factors: 2**k alone may overflow
        norm = flat_norm(x)
    mean = _sum(x) / n
    var = norm * norm / n - mean * mean
    if var <= 1e-2 * mean * mean:
        mean, var = _centered(x, mean)
    mean = min(max(_unscale(mean, k), lo), hi)  # rounding must not take it past min or max
    return lo, hi, mean, _unscale(math.sqrt(max(var, 0.0)), k)


def _unscale(v: float, k: int) -> float:
    try:
        return math.ldexp(v, -k)
    except OverflowError:  # a std past float64's range (values near ±1.8e308 of both signs)
        return math.inf


def _sum(x: torch.Tensor) -> float:
    """The sum of flat ``x`` in float64: float32 sums of 4096-element chunks, added in float64 (CPU's
    ``x.sum(dtype=torch.float64)`` converts every element first: 27 ms on 10M floats, this 1 ms)."""
    if x.dtype == torch.float64:
        return float(x.sum())
    whole = x.numel() // _CHUNK * _CHUNK
    total = float(x[whole:].double().sum())
    if whole:
        total += float(x[:whole].view(-1, _CHUNK).sum(1).double().sum())
    return total


def _centered(x: torch.Tensor, mean: float) -> tuple[float, float]:
    """Mean and population variance from the deviations from ``mean``, rounded to x's dtype: ``x - m``
    is exact for every value within a factor 2 of ``m`` (Sterbenz), so the spread keeps its digits."""
    m = float(torch.tensor(mean, dtype=x.dtype))
    d = x - m
    n = x.numel()
    shift = _sum(d) / n
    spread = flat_norm(d)
    return m + shift, spread * spread / n - shift * shift


def _join(a: str | None, b: str | None) -> str | None:
    return b if a is None else a if b is None else f"{a}; {b}"
