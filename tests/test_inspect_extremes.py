"""Statistics, histograms and previews at the edges: exploding and vanishing values, integers past
float32's 2**24, tensors whose rows alias a sample, nested, expanded and sparse tensors. Every number
is checked against torch in float64."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight._capture.inspect import BINS, histogram, preview, tensor_view
from gradsight._capture.summary import meta_of, norm_of, summarize, underflowed
from gradsight._requests import answer
from gradsight.graph import TensorSummary
from gradsight.inspection import GradStep, Inspection
from gradsight.schema import graph_to_wire, inspection_to_wire, tensor_to_wire
from gradsight.skeleton import graph_transport

F32 = torch.finfo(torch.float32)
HUGE = 1 << 40  # elements: 4 TB as float32, which no allocator here hands out (a copy fails at once)


def values(p: gs.Preview) -> np.ndarray:
    return np.frombuffer(p.values, dtype="<f8" if p.dtype == "float64" else "<f4").reshape(p.shape or (1,))


def reference(t: torch.Tensor) -> dict[str, float]:
    x = t.detach().reshape(-1).double()
    return {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()), "std": float(x.std()),
            "norm": float(torch.linalg.vector_norm(x))}  # fmt: skip


def assert_matches(s: TensorSummary, t: torch.Tensor, rel: float = 1e-6, std_rel: float = 1e-4) -> None:
    r = reference(t)
    assert (s.min, s.max) == (r["min"], r["max"])
    assert s.mean == pytest.approx(r["mean"], rel=rel, abs=1e-300)
    assert s.min <= s.mean <= s.max  # type: ignore[operator]
    assert s.std == pytest.approx(r["std"], rel=std_rel, abs=1e-300)
    assert s.norm == pytest.approx(r["norm"], rel=rel, abs=0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- exploding values (finite) -------------------------------------------------------------------


@pytest.mark.parametrize(
    "t",
    [
        torch.tensor([F32.max, -F32.max, F32.max, F32.max * 0.5]),
        torch.full((10,), 1e38) + torch.arange(10.0) * 1e31,  # a float32 sum overflows
        torch.randn(100_000, generator=gen(0)) * 1e34,
        torch.randn(300_000, generator=gen(1)).abs() * 1e33 + 1e37,  # a big mean, a spread under it
    ],
)
def test_exploding_finite_values_get_finite_mean_and_std(t: torch.Tensor) -> None:
    s = summarize(t)
    assert_matches(s, t)
    assert (s.nan_count, s.inf_count, s.note, s.nonfinite) == (0, 0, None, False)
    wire = tensor_to_wire(s)
    assert all(wire[k] is not None for k in ("mean", "std", "norm"))


def test_float64_values_whose_norm_overflows_keep_their_std() -> None:
    t = torch.tensor([1e308, -1e308, 1.7e308], dtype=torch.float64)
    s = summarize(t)
    scaled = t / 2.0**1000  # the exact statistics, in range
    assert s.mean == pytest.approx(float(scaled.mean()) * 2.0**1000, rel=1e-12)
    assert s.std == pytest.approx(float(scaled.std()) * 2.0**1000, rel=1e-12)
    assert (s.nan_count, s.inf_count, s.norm) == (0, 0, None)
    assert s.note is not None and "finite values" not in s.note and "norm" in s.note


# -- mean and std where float32 sums round --------------------------------------------------------


@pytest.mark.parametrize(
    "t",
    [
        torch.full((1000,), 1e6) + torch.arange(1000) * 1e-3,
        torch.full((4096 * 3 + 5,), 1e6) + torch.randint(0, 2, (4096 * 3 + 5,), generator=gen(2)) * 0.0625,
        1.0 + 1e-4 * torch.randn(1_000_000, generator=gen(3)),
        torch.arange(10_000_000, 10_001_000),  # int64 positions
        -7.0 + 1e-7 * torch.randn(5000, generator=gen(4)),  # a spread of 1 ulp or so
    ],
)
def test_mean_and_std_are_accurate_where_float32_sums_round(t: torch.Tensor) -> None:
    assert_matches(summarize(t), t)


@pytest.mark.parametrize("value", [0.1, 1e6 + 0.5, -3e-30, 3e38, 1e-40])
@pytest.mark.parametrize("n", [1, 100, 5000, 300_000])
def test_a_constant_has_its_value_for_mean_and_zero_std(value: float, n: int) -> None:
    t = torch.full((n,), value)
    s = summarize(t)
    v = float(t[0])
    assert (s.min, s.max, s.mean, s.std) == (v, v, v, 0.0)
    assert s.norm == pytest.approx(float(t.double().norm()), rel=1e-6)


def test_the_mean_stays_within_min_and_max() -> None:
    for seed in range(20):
        g = gen(seed)
        t = 0.1 + torch.randint(0, 2, (int(torch.randint(2, 10_000, (1,), generator=g)),), generator=g) * 1e-8
        s = summarize(t)
        assert s.min <= s.mean <= s.max  # type: ignore[operator]
        assert s.mean == pytest.approx(float(t.double().mean()), rel=1e-7)


# -- vanishing values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t",
    [
        torch.full((1000,), 1e-25),
        torch.randn(500_000, generator=gen(5)) * 1e-21,  # squares denormal: 3 digits
        torch.tensor([1e-300, -2e-300], dtype=torch.float64),
        torch.tensor([1e-45, 0.0]),  # float32's smallest denormal
    ],
)
def test_a_vanishing_tensor_has_its_norm_not_zero(t: torch.Tensor) -> None:
    expected = float(torch.linalg.vector_norm(t.double() * 2.0**500)) / 2.0**500
    assert summarize(t).norm == pytest.approx(expected, rel=1e-6, abs=0)
    assert norm_of(t) == pytest.approx(expected, rel=1e-6, abs=0)
    assert summarize(torch.zeros(10)).norm == 0.0


def test_a_vanishing_gradient_is_not_called_zero() -> None:
    w = torch.randn(1000, requires_grad=True)
    dbg = gs.debugger(lambda: (w * 1e-25).sum())
    (g,) = torch.autograd.grad((w * 1e-25).sum(), w)
    leaf = dbg.graph.node("leaf:w")
    assert leaf.grad_norm == pytest.approx(float(g.double().norm()), rel=1e-6, abs=0)
    assert dbg.inspect("leaf:w").why is None
    dbg.close()


def test_a_live_leafs_vanishing_gradient_is_taken_from_its_consumers(monkeypatch: pytest.MonkeyPatch) -> None:
    # a leaf's own gradient is never kept; the one its consumer passed it is (a small graph)
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    model = torch.nn.Linear(100, 1)
    live = gs.debugger(model)
    (model(torch.randn(8, 100, generator=gen(6))) * 1e-25).sum().backward()
    assert model.weight.grad is not None
    expected = float(model.weight.grad.double().norm())
    assert live.graph.node("leaf:weight").grad_norm == pytest.approx(expected, rel=1e-6, abs=0)
    assert live.inspect("leaf:weight").why is None
    live.close()


# -- integers past 2**24 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t",
    [
        torch.tensor([16_777_217, 16_777_219, 2**40 + 1]),
        torch.tensor([16_777_217, 2**31 - 1, -(2**31)], dtype=torch.int32),
        torch.arange(2**30, 2**30 + 2000, dtype=torch.int64),  # 2048 at most: a preview of exact values
    ],
)
def test_integers_past_float32s_range_are_exact(t: torch.Tensor) -> None:
    s = summarize(t)
    ints = t.tolist()
    assert (s.min, s.max) == (min(ints), max(ints))
    assert s.mean == pytest.approx(sum(ints) / len(ints), rel=1e-12)
    assert s.std == pytest.approx(float(t.double().std()), rel=1e-9)
    view = tensor_view("saved:x", "saved", "x", t, meta_of(t))
    assert view.preview is not None and view.preview.dtype == "float64"
    assert values(view.preview).tolist() == ints
    assert preview(torch.tensor([1, 2, 3])).dtype == "float32"  # small ones stay float32


# -- histogram sampling --------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols"), [(1_000_000, 2), (1_000_000, 3), (500_000, 4), (375_000, 8)])
def test_a_histogram_sample_does_not_alias_with_columns(rows: int, cols: int) -> None:
    t = torch.zeros(rows, cols)
    t[:, -1] = 1000.0  # one column in `cols` holds every big value
    rng = torch.get_rng_state()
    h = histogram(t, summarize(t))
    assert torch.equal(rng, torch.get_rng_state())
    assert h is not None and h.stride > 1
    exact = torch.histc(t.double(), bins=BINS, min=0.0, max=1000.0)
    share = exact[-1].item() / t.numel()
    assert h.counts[-1] / sum(h.counts) == pytest.approx(share, rel=0.02)
    assert sum(h.counts) == math.ceil(t.numel() / h.stride)


# -- nested tensors ------------------------------------------------------------------------------


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype and say so
        yield


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("layout", [torch.jagged, torch.strided])
def test_nested_tensors_summarize_with_ragged_dims_as_minus_one(layout: torch.layout) -> None:
    parts = [torch.randn(2, 3, generator=gen(7)), torch.randn(4, 3, generator=gen(8))]
    nt = torch.nested.nested_tensor(parts, layout=layout, requires_grad=True)
    loss = (nt.sin() * 2).values().sum() if layout == torch.jagged else torch.nested.to_padded_tensor(nt, 0.0).sum()
    dbg = gs.debugger(loss, params={"nt": nt})
    json.dumps(graph_transport(graph_to_wire(dbg.graph))["schema_version"])
    bytes(graph_transport(graph_to_wire(dbg.graph))["packed"])  # JSON could take every shape
    view = next(v for v in dbg.inspect("leaf:nt").tensors if v.key == "leaf:value")
    s = view.summary
    assert s.shape == (2, -1, 3) and s.numel == 18
    assert s.note is not None and "nested" in s.note and view.preview is None
    assert_matches(s, torch.cat(parts))
    assert view.histogram is not None and sum(view.histogram.counts) == 18
    for node in dbg.graph.nodes:
        body, _ = answer(dbg, "inspect", {"node": node.id})
        json.dumps(body, allow_nan=False)
    dbg.close()


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("keep_all_below", [32 * 2**20, 0])  # every gradient kept; none (views unhooked)
def test_a_runnable_run_over_jagged_nested_tensors_builds_and_inspects(
    monkeypatch: pytest.MonkeyPatch, keep_all_below: int
) -> None:
    # Output shapes held the ragged dim as a torch.SymInt: records.gradient_bytes raised ('NestedIntNode'
    # object has no attribute 'add'), and a derived node's numel read math.prod((2, -1, 2)) = -4.
    monkeypatch.setattr(gs.options, "keep_all_below", keep_all_below)
    torch.manual_seed(0)
    lin, lin2 = nn.Linear(3, 2), nn.Linear(3, 2)
    parts = [torch.randn(2, 3, generator=gen(7)), torch.randn(4, 3, generator=gen(8))]
    nt = torch.nested.nested_tensor(parts, layout=torch.jagged, requires_grad=True)

    def step() -> torch.Tensor:
        return (lin(nt) * 2 + lin2(nt)).relu().values().pow(2).sum()

    dbg = gs.debugger(step)
    assert dbg.status == "ready" and dbg.error == "" and not dbg.graph.run.errors
    step().backward()  # the oracle: the same gradients without gradsight
    for name, p in [("lin.weight", lin.weight), ("lin2.bias", lin2.bias), ("nt", nt)]:
        assert dbg.graph.node(f"leaf:{name}").grad_norm == pytest.approx(float(torch.linalg.vector_norm(
            p.grad.values() if p.is_nested else p.grad)), rel=1e-6)  # type: ignore[union-attr]  # fmt: skip
    add = dbg.graph.find("AddBackward0")[0]
    assert add.outputs[0].shape == (2, -1, 2) and add.grad_in[0] is not None and add.grad_in[0].numel == 12
    for node in dbg.graph.nodes:
        assert all(d >= -1 for o in node.outputs for d in o.shape)
        dbg.inspect(node.id)
        body, _ = answer(dbg, "inspect", {"node": node.id})
        json.dumps(body, allow_nan=False)
    json.dumps(graph_to_wire(dbg.graph), allow_nan=False)
    dbg.close()


# -- expanded (stride-0) tensors -----------------------------------------------------------------


def test_an_expanded_tensor_is_never_materialized() -> None:
    base = torch.tensor([1.5, -2.0, 4.0])
    t = base[:, None].expand(3, HUGE // 3)  # 4 TB if copied: any copy fails at once
    repeat = HUGE // 3
    s = summarize(t)
    exact = base.double()
    assert (s.min, s.max, s.numel) == (-2.0, 4.0, 3 * repeat)
    assert s.mean == pytest.approx(float(exact.mean()), rel=1e-12)
    n = 3 * repeat  # every value repeats `repeat` times: population variance of the base, n - 1 in the sample std
    assert s.std == pytest.approx(math.sqrt(float(exact.var(unbiased=False)) * n / (n - 1)), rel=1e-6)
    assert s.norm == pytest.approx(float(exact.norm()) * math.sqrt(repeat), rel=1e-6)
    assert norm_of(t) == pytest.approx(s.norm, rel=1e-12)
    view = tensor_view("saved:x", "saved", "x", t, meta_of(t))
    assert view.preview is not None and view.note is None
    assert view.preview.shape == (3, 128) and view.preview.block == (1, math.ceil(repeat / 128))
    assert np.array_equal(values(view.preview), np.repeat(base.numpy()[:, None], 128, axis=1))
    h = view.histogram
    assert h is not None and h.stride == repeat and sum(h.counts) == 3


def test_an_expanded_tensor_previews_like_its_copy() -> None:
    base = torch.randn(5, 1, 300, generator=gen(9))
    t = base.expand(5, 700, 300)
    copy = t.contiguous()
    for index in ([0], [4]):
        assert np.allclose(values(preview(t, index)), values(preview(copy, index)), rtol=1e-5, atol=1e-6)
    assert_matches(summarize(t), copy, rel=1e-6)
    h, hc = histogram(t, summarize(t)), histogram(copy, summarize(copy))
    assert h is not None and hc is not None
    shares = np.array(h.counts) / sum(h.counts)
    assert np.allclose(shares, np.array(hc.counts) / sum(hc.counts), atol=2e-3)


# -- sparse tensors ------------------------------------------------------------------------------


def test_a_sparse_preview_never_densifies_the_whole_tensor() -> None:
    rows = torch.tensor([1, 5, HUGE - 1])
    vals = torch.randn(3, 16, generator=gen(10), dtype=torch.float64)
    t = torch.sparse_coo_tensor(rows[None], vals, (HUGE, 16), check_invariants=True)  # an embedding gradient
    p = preview(t)
    block = math.ceil(HUGE / 128)
    assert p.shape == (128, 16) and p.block == (block, 1)
    v = values(p)
    expected = np.zeros((128, 16))
    expected[0] = (vals[0] + vals[1]).numpy() / block
    expected[-1] = vals[2].numpy() / (HUGE - 127 * block)  # the last block is partial
    assert np.allclose(v, expected, rtol=1e-6, atol=0)


SPARSE_CASES = [(layout, shape) for layout in ("coo", "hybrid") for shape in ((300, 1000), (3, 500, 260), (5000,))]


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize(("layout", "shape"), [*SPARSE_CASES, ("csr", (300, 1000)), ("bsr", (300, 1000))])
def test_a_sparse_preview_matches_the_dense_one(layout: str, shape: tuple[int, ...]) -> None:
    dense = torch.randn(*shape, generator=gen(11)) * (torch.rand(*shape, generator=gen(12)) < 0.05)
    dense.view(-1)[7] = math.nan
    if layout == "hybrid":
        t = dense.to_sparse(1)
    elif layout == "coo":
        t = dense.to_sparse()
    elif layout == "csr":
        t = dense.to_sparse_csr()
    else:
        t = dense.to_sparse_bsr((2, 2))
    index = [2] if len(shape) == 3 else None
    got, want = preview(t, index), preview(dense, index)
    assert (got.shape, got.block, got.index) == (want.shape, want.block, want.index)
    assert np.allclose(values(got), values(want), rtol=1e-5, atol=1e-6, equal_nan=True)


# -- the wire ------------------------------------------------------------------------------------


def test_a_live_grad_history_keeps_nan_and_inf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    model = torch.nn.Linear(3, 1)
    live = gs.debugger(model)
    x = torch.randn(2, 3, generator=gen(13))
    model(x).sum().backward()
    model(x * math.inf).sum().backward()  # .grad turns NaN
    body, _ = answer(live, "inspect", {"node": "leaf:weight"})
    json.dumps(body, allow_nan=False)
    first, second = body["history"]
    assert first["grad_norm"] == pytest.approx(first["received_norm"]) and isinstance(first["grad_norm"], float)
    assert (second["grad_norm"], second["received_norm"]) == ("nan", "nan")
    live.close()
    steps = (GradStep(1, math.inf, -math.inf), GradStep(2, None, 1.0))
    wire, _ = inspection_to_wire(Inspection("leaf:w", (), steps))
    assert wire["history"] == [{"step": 1, "grad_norm": "inf", "received_norm": "-inf"},
                               {"step": 2, "grad_norm": None, "received_norm": 1.0}]  # fmt: skip


def test_a_gradient_past_the_budget_says_nan_or_inf() -> None:
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(64, generator=gen(14)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (torch.sqrt(x * self.w) / (x - x)).sum()  # NaN from the sqrt, inf from 1/0

    x = torch.randn(64, generator=gen(15))
    dbg = gs.debugger(M(), inputs=x, memory_budget=100)
    notes = {}
    for name in ("SqrtBackward0", "MulBackward0"):
        node = dbg.graph.find(name)[0]
        body, _ = answer(dbg, "inspect", {"node": node.id})
        (grad,) = [t["summary"] for t in body["tensors"] if t["key"] == "grad-in:0"]
        assert grad["norm"] is None and grad["nonfinite"]
        notes[name] = grad["note"]
    assert notes["SqrtBackward0"].startswith("norm inf") and notes["MulBackward0"].startswith("norm NaN")
    dbg.close()


class _CountNorms(torch.overrides.TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.calls += func is torch.linalg.vector_norm
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("value", [1e-25, 0.0])
def test_a_vanishing_gradients_norm_is_rescaled_at_once(value: float) -> None:
    """Squares of 1e-25 underflow float32: the first vector_norm reads 0, and a second plain one would
    too (a vanishing layer's gradient, hundreds per run in a deep MLP): straight to the rescaled norm."""
    t = torch.full((1000,), value)
    with _CountNorms() as counted:
        norm = norm_of(t)
    assert norm == pytest.approx(value * math.sqrt(1000), rel=1e-6, abs=0)
    assert counted.calls <= 2  # the first try and the rescaled one (3 before: flat_norm's try in between)
    assert underflowed(float(torch.linalg.vector_norm(t)), t)
    assert not underflowed(1.0, t) and not underflowed(math.inf, t) and not underflowed(None, t)
