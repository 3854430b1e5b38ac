"""Small tensors' statistics in plain Python (summary_small) against the kernels' (summary._with_stats)."""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gradsight._capture.summary import _with_stats, flat_norm, meta_of, norm_of, stat_values, summarize
from gradsight._capture.summary_small import SMALL, small_stats
from gradsight.graph import TensorSummary

INF, NAN = math.inf, math.nan


def both(t: torch.Tensor, exact: bool = True) -> tuple[TensorSummary, TensorSummary]:
    """``t``'s summary by the Python path and by the torch path; ``exact``: both over its values in
    float64 (over float32 ones the torch path's std is float32-accurate, ~1e-7)."""
    x, note, repeat = stat_values(t)
    assert 0 < x.numel() <= SMALL
    x = x.double() if exact else x
    base = meta_of(t)
    return small_stats(base, x, note, repeat, flat_norm(x)), _with_stats(base, x, note, repeat)


def assert_agree(py: TensorSummary, ref: TensorSummary, rel: float = 1e-12) -> None:
    """Same metadata, counts, notes, min, max and norm (both paths take it with the same kernel); mean
    and std within ``rel`` (the mean, which may be a difference of big values, within ``rel`` of the
    largest magnitude)."""
    exact = ("shape", "dtype", "device", "numel", "layout", "freed", "nan_count", "inf_count", "note", "min", "max")
    assert [getattr(py, f) for f in (*exact, "norm")] == [getattr(ref, f) for f in (*exact, "norm")]
    assert (py.mean is None, py.std is None) == (ref.mean is None, ref.std is None)
    if py.min is None or py.max is None:
        return
    assert py.mean is not None and py.min <= py.mean <= py.max
    assert py.mean == pytest.approx(ref.mean, rel=rel, abs=rel * max(-py.min, py.max))
    assert py.std == pytest.approx(ref.std, rel=rel, abs=0)  # approx alone passes any two values under 1e-12


def _random_tensors(count: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(count):
        n = int(torch.randint(1, SMALL + 1, (1,), generator=g))
        dtype = (torch.float32, torch.float64)[i % 2]
        scale = 10.0 ** float(torch.randint(-30, 31, (1,), generator=g))
        offset = (0.0, 1.0, -3.0, 1e3)[i % 4] * scale  # a mean far from 0 next to a small spread too
        spread = 10.0 ** float(torch.randint(-4, 2, (1,), generator=g))
        out.append((offset + scale * spread * torch.randn(n, generator=g, dtype=torch.float64)).to(dtype))
    return out


@pytest.mark.parametrize("t", _random_tensors(300))
def test_random_small_tensors_agree_with_the_torch_path(t: torch.Tensor) -> None:
    assert_agree(*both(t))
    if t.dtype == torch.float32:  # against the kernels on the float32 values themselves
        assert_agree(*both(t, exact=False), rel=1e-5)


def _f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


SPECIAL = {
    "nan and inf": torch.tensor([1.0, NAN, INF, -INF, 3.0, -2.5]),
    "all nan": torch.full((5,), NAN),
    "all inf": _f64(INF, -INF, INF),
    "nan and inf only": _f64(NAN, INF),
    "one finite among nan": torch.tensor([NAN, 4.0, NAN]),
    "tiny float32": torch.tensor([1e-30, -2e-30, 3e-30, 1e-31]),
    "tiny float64": _f64(1e-300, -2e-300, 3e-300),
    "subnormal float64": _f64(5e-324, 1e-320, -3e-315, 0.0),
    "big float32": torch.tensor([0.0, -1.0, 2.0, 0.0, 1e30]),
    "float32 near its max": torch.tensor([3e38, -3.3e38, 1.0]),
    "big float64": _f64(1e300, -2e300, 5e299, 1.0),
    "norm past float64": _f64(1e308, 1.5e308, 1.7e308, 1e308),
    "std past float64": _f64(1.7e308, -1.7e308, 1.7e308, -1.7e308),
    "population std rounded past float64": _f64(*[sys.float_info.max, -sys.float_info.max] * 37),
    "big with inf": _f64(1e308, 1.7e308, INF, -1.7e308),
    "constant": torch.full((7,), 0.1),
    "constant float64": torch.full((300,), 1.0 / 3.0, dtype=torch.float64),
    "one element": torch.tensor([2.5]),
    "one element float64": _f64(-7e-200),
    "zeros": torch.zeros(10),
    "constant whose sum rounds": _f64(0.1, 0.1, 0.1),  # fsum / 3 is 0.10000000000000002
    "constant whose deviations round": _f64(*[-57.39404072383725] * 51),  # a variance of 1e-44 unless exact
    "spread of one ulp": _f64(1.0, 1.0, 1.0, math.nextafter(1.0, 2.0)),  # the mean's rounding is the spread
    "float32 spread of one ulp": torch.tensor([1.0, 1.0, 1.0 + 2**-23]),
    # every value X or the one below it, 114 of X in 149: fsum / 149 rounds past X
    "mean rounded past max": _f64(*[8015.928139806915] * 114, *[math.nextafter(8015.928139806915, -INF)] * 35),
    "small spread round a big mean": 1e6 + 1e-3 * torch.arange(64, dtype=torch.float64),
    "float32 spread round a mean": 1.0 + 1e-3 * torch.randn(200, generator=torch.Generator().manual_seed(3)),
    "int64 past 2**53": torch.tensor([2**53 + 1, 2**60, -(2**62), 5]),
    "int32": torch.tensor([1, -2, 3], dtype=torch.int32),
    "int8": torch.tensor([-128, 127, 0], dtype=torch.int8),
    "uint8": torch.tensor([0, 255, 7], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True, True]),
    "float16": torch.tensor([1.0, 65504.0, -6e-5, 0.5], dtype=torch.float16),
    "float16 inf": torch.tensor([1.0, INF, 2.0], dtype=torch.float16),
    "bfloat16": torch.tensor([1.0, 3e38, -1e-38], dtype=torch.bfloat16),
    "complex64": torch.tensor([3 + 4j, 1j, -2.0], dtype=torch.complex64),
    "complex128 with nan": torch.tensor([3 + 4j, complex(NAN, 1.0), 1e300j], dtype=torch.complex128),
    "expanded": torch.tensor([1.0, -2.0, 4.0]).expand(5, 3),
    "expanded twice": torch.randn(1, 4, 1, generator=torch.Generator().manual_seed(4)).expand(3, 4, 6),
    "expanded nan": torch.tensor([NAN, 1.0, INF, 2.0]).expand(6, 4),
    "expanded constant": torch.tensor([2.0]).expand(100),
    "expanded one value": torch.tensor(3.0).expand(1, 1),
    "transposed": torch.arange(12.0).view(3, 4).t(),
}


@pytest.mark.parametrize("t", SPECIAL.values(), ids=SPECIAL.keys())
def test_special_values_agree_with_the_torch_path(t: torch.Tensor) -> None:
    assert_agree(*both(t))
    py, ref = both(t, exact=False)
    assert_agree(py, ref, rel=1e-6 if t.dtype != torch.float64 else 1e-12)
    assert summarize(t) == py  # which takes the Python path for them


@pytest.mark.parametrize("t", [*SPECIAL.values(), *_random_tensors(20)])
def test_a_norm_reads_the_same_with_or_without_statistics(t: torch.Tensor) -> None:
    """A hook's norm, norm_of's and summarize's: a re-run that takes statistics shows the same number."""
    s = summarize(t)
    assert s.norm == norm_of(t) or (s.norm is None and not math.isfinite(norm_of(t) or math.nan))


def test_expanded_tensor_counts_each_repeat() -> None:
    base = torch.tensor([NAN, 1.0, INF, 2.0, -1.0])
    s, full = summarize(base.expand(6, 5)), summarize(base.expand(6, 5).contiguous())
    assert (s.nan_count, s.inf_count) == (full.nan_count, full.inf_count) == (6, 6)
    finite = summarize(base[[1, 3, 4]].expand(7, 3))
    assert finite.norm == pytest.approx(float(base[[1, 3, 4]].double().norm()) * math.sqrt(7), rel=1e-7)
    assert finite.std == pytest.approx(float(base[[1, 3, 4]].expand(7, 3).double().std()), rel=1e-15)


@pytest.mark.parametrize("value", [1e-30, 1e-160, 1e-310, 1e150, 1e300])
def test_norm_neither_overflows_nor_underflows(value: float) -> None:
    s = summarize(torch.full((100,), value, dtype=torch.float64).expand(3, 100))
    assert s.norm == pytest.approx(value * math.sqrt(300), rel=1e-6 if value < 1e-300 else 1e-15, abs=0)
    assert s.mean == value and s.std == 0.0


def test_mean_of_a_constant_is_its_value_and_stays_within_min_and_max() -> None:
    s = summarize(torch.full((SMALL,), 0.1))
    assert s.mean == s.min == s.max == float(torch.tensor(0.1)) and s.std == 0.0
    s = summarize(torch.tensor([0.1, 0.1, 0.1, math.nextafter(0.1, 1.0)], dtype=torch.float64))
    assert s.min is not None and s.max is not None and s.mean is not None
    assert s.min <= s.mean <= s.max


class _Ops(TorchDispatchMode):
    """Records every torch operator called while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


_FEW = {"aten.detach.default", "aten.view.default", "aten.slice.Tensor", "aten.linalg_vector_norm.default",
        "aten._local_scalar_dense.default"}  # fmt: skip


@pytest.mark.parametrize(
    "t", [torch.arange(32.0), torch.linspace(-1, 1, SMALL, dtype=torch.float64), torch.tensor([1.0, NAN, INF]),
          torch.ones(3).expand(4, 3)],
)  # fmt: skip
def test_small_tensor_statistics_take_one_kernel_the_norm(t: torch.Tensor) -> None:
    with _Ops() as seen:
        s = summarize(t)
    assert s.min is not None
    # detach, a view (reshape) or a slice (compact), the norm and its float(): no aminmax, sum, isnan,
    # isinf or indexing
    assert set(seen.ops) <= _FEW, seen.ops
    assert len(seen.ops) <= 5, seen.ops


def test_bigger_tensors_keep_the_kernels() -> None:
    t = torch.randn(SMALL + 1, generator=torch.Generator().manual_seed(6))
    with _Ops() as seen:
        s = summarize(t)
    assert "aten.aminmax.default" in seen.ops  # _with_stats
    assert s.norm == pytest.approx(float(t.double().norm()), rel=1e-6)
