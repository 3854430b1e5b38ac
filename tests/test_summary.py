"""Tensor summaries on every kind of tensor a graph can hold, without raising or perturbing."""

from __future__ import annotations

import math

import pytest
import torch

from gradsight._capture.summary import summarize


def test_float_statistics_match_torch() -> None:
    t = torch.tensor([[1.0, -2.0], [3.0, 4.0]])
    s = summarize(t)
    assert s.shape == (2, 2) and s.dtype == "float32" and s.device == "cpu" and s.numel == 4
    assert (s.min, s.max) == (-2.0, 4.0)
    assert s.mean == pytest.approx(1.5)
    assert s.std == pytest.approx(t.std().item())
    assert s.norm == pytest.approx(t.norm().item())
    assert (s.nan_count, s.inf_count) == (0, 0)


def test_nan_and_inf_are_counted_not_dropped() -> None:
    s = summarize(torch.tensor([1.0, math.nan, math.inf, -math.inf, 3.0]))
    assert (s.nan_count, s.inf_count) == (1, 2)
    assert s.norm is None
    assert (s.min, s.max) == (1.0, 3.0)
    assert s.note is not None and "finite" in s.note


def test_all_nan() -> None:
    s = summarize(torch.full((3,), math.nan))
    assert s.nan_count == 3 and s.min is None and s.mean is None


@pytest.mark.parametrize("shape", [(0,), (0, 3)])
def test_empty(shape: tuple[int, ...]) -> None:
    s = summarize(torch.empty(shape))
    assert s.numel == 0 and s.shape == shape and s.min is None and s.norm is None


def test_single_element_has_zero_std_not_nan() -> None:
    s = summarize(torch.tensor([5.0]))
    assert s.std == 0.0 and s.mean == 5.0


@pytest.mark.parametrize(
    ("tensor", "dtype"),
    [
        (torch.tensor([1, 2, 3]), "int64"),
        (torch.tensor([True, False, True]), "bool"),
        (torch.tensor([1.0, 2.0], dtype=torch.float16), "float16"),
        (torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "bfloat16"),
        (torch.tensor([1.0, 2.0], dtype=torch.float64), "float64"),
    ],
)
def test_other_dtypes(tensor: torch.Tensor, dtype: str) -> None:
    s = summarize(tensor)
    assert s.dtype == dtype
    assert s.max == pytest.approx(tensor.double().max().item())
    assert s.mean == pytest.approx(tensor.double().mean().item(), rel=1e-3)


def test_complex_uses_magnitude() -> None:
    s = summarize(torch.tensor([3 + 4j, 0 + 1j], dtype=torch.complex64))
    assert s.dtype == "complex64" and s.max == pytest.approx(5.0) and s.min == pytest.approx(1.0)
    assert s.note is not None and "|z|" in s.note


def test_sparse_uses_stored_values() -> None:
    i = torch.tensor([[0, 1], [1, 0]])
    t = torch.sparse_coo_tensor(i, torch.tensor([2.0, -3.0]), (3, 3), check_invariants=True)
    s = summarize(t)
    assert s.layout == "sparse_coo" and s.shape == (3, 3) and s.numel == 9
    assert (s.min, s.max) == (-3.0, 2.0)


def test_meta_tensor_has_no_statistics() -> None:
    s = summarize(torch.empty(4, 4, device="meta"))
    assert s.device == "meta" and s.numel == 16 and s.min is None


def test_requires_grad_tensor_builds_no_graph_and_keeps_rng() -> None:
    t = torch.randn(10, requires_grad=True)
    rng = torch.get_rng_state()
    summarize(t)
    assert torch.equal(rng, torch.get_rng_state())
    assert t.grad is None and t.grad_fn is None


def test_stats_off_keeps_metadata_only() -> None:
    s = summarize(torch.ones(3), stats=False)
    assert s.numel == 3 and s.mean is None


def test_nbytes() -> None:
    assert summarize(torch.ones(3, dtype=torch.float64)).nbytes == 24


@pytest.mark.parametrize(
    "t",
    [
        torch.randn(10_000) * 3 + 5,
        1000.0 + torch.randn(10_000, dtype=torch.float64) * 1e-4,  # tiny spread next to a big mean
        torch.full((100,), 7.0),
        # float32 values a little spread round a mean (a LayerNorm weight after training): E[x²] - mean²
        # loses the spread to the norm's own rounding (up to 20% off at spreads of 1e-3 of the mean)
        *(1.0 + 1e-3 * torch.randn(16_384, generator=torch.Generator().manual_seed(s)) for s in range(4)),
        -3.0 + 0.05 * torch.randn(300_000, generator=torch.Generator().manual_seed(9)),
    ],
)
def test_std_and_mean_match_torch(t: torch.Tensor) -> None:
    s = summarize(t)
    assert s.mean == pytest.approx(t.double().mean().item(), rel=1e-6)
    assert s.std == pytest.approx(t.double().std().item(), rel=1e-4, abs=1e-12)


def test_statistics_of_ten_million_floats_are_accurate() -> None:
    torch.manual_seed(0)
    x = torch.randn(10_000_000)
    s = summarize(x)
    exact = x.double()
    assert s.norm == pytest.approx(float(exact.norm()), rel=1e-6)  # vector_norm alone: 3.7e-4 off
    assert s.std == pytest.approx(float(exact.std()), rel=1e-6)


def test_finite_values_whose_squares_overflow_float32() -> None:
    s = summarize(torch.tensor([0.0, -1.0, 2.0, 0.0, 1e30]))
    assert s.nan_count == 0 and s.inf_count == 0 and s.note is None
    assert s.norm == pytest.approx(1e30, rel=1e-6)
    assert s.std == pytest.approx(float(torch.tensor([0.0, -1.0, 2.0, 0.0, 1e30], dtype=torch.float64).std()), rel=1e-6)
