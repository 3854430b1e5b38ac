"""Lazy inspection: statistics, histograms and previews on demand, and the view's request/reply."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

import gradsight as gs
from gradsight._capture.inspect import BINS, histogram, preview, tensor_view
from gradsight._capture.store import EAGER_ELEMENTS, EAGER_NODES
from gradsight._capture.summary import summarize
from tests.zoo import ZOO


def values(p: gs.Preview) -> np.ndarray:
    return np.frombuffer(p.values, dtype="<f8" if p.dtype == "float64" else "<f4").reshape(p.shape or (1,))


def test_histogram_counts_every_finite_value_and_reports_the_rest() -> None:
    t = torch.tensor([0.0, 1.0, 2.0, 3.0, math.nan, math.inf, -math.inf, 1.5])
    h = histogram(t, summarize(t))
    assert h is not None
    assert sum(h.counts) == 5 and (h.nan, h.posinf, h.neginf) == (1, 1, 1)
    assert (h.min, h.max) == (0.0, 3.0)


def test_histogram_of_a_constant() -> None:
    t = torch.full((10,), 3.0)
    h = histogram(t, summarize(t))
    assert h is not None and sum(h.counts) == 10


def test_small_preview_is_exact() -> None:
    t = torch.arange(12.0).reshape(3, 4)
    p = preview(t)
    assert p.shape == (3, 4) and p.block == (1, 1)
    assert np.array_equal(values(p), t.numpy())


def test_big_1d_preview_is_block_averaged() -> None:
    t = torch.arange(10_000.0)
    p = preview(t)
    assert p.shape[0] <= 2048 and p.block[0] == 5
    assert values(p)[0] == pytest.approx(2.0)  # mean of 0..4
    assert values(p)[-1] == pytest.approx(t[-5:].mean().item())


def test_big_2d_preview_keeps_partial_blocks_right() -> None:
    t = torch.ones(300, 257)
    t[-1, -1] = 5.0
    p = preview(t)
    assert p.shape[0] <= 128 and p.shape[1] <= 128
    assert values(p).max() > 1.0  # the last, partial block averages only its real values
    assert np.allclose(values(p)[:-1, :-1], 1.0)


def test_nd_preview_slices_leading_dims() -> None:
    t = torch.arange(24.0).reshape(2, 3, 4)
    p = preview(t, [1])
    assert p.index == (1,) and p.full_shape == (2, 3, 4)
    assert np.array_equal(values(p), t[1].numpy())
    with pytest.raises(IndexError):
        preview(t, [2])
    with pytest.raises(ValueError, match="leading dim"):
        preview(t, [0, 0])


def test_nan_shows_in_the_preview() -> None:
    t = torch.tensor([1.0, math.nan, 2.0])
    assert math.isnan(values(preview(t))[1])


def test_preview_of_complex_int_bool_and_scalar() -> None:
    assert values(preview(torch.tensor([3 + 4j])))[0] == pytest.approx(5.0)
    assert values(preview(torch.tensor([True, False]))).tolist() == [1.0, 0.0]
    assert preview(torch.tensor(2.5)).shape == ()


def test_view_of_a_dropped_tensor_has_statistics_only() -> None:
    s = summarize(torch.ones(4), stats=True)
    v = tensor_view("grad-in:0", "grad-in", "grad-in 0", None, s)
    assert not v.kept and v.preview is None and v.summary.norm == 2.0


def test_tensor_debugger_inspects_saved_and_leaf_values() -> None:
    case = ZOO["seed_sin"]()
    dbg = gs.debugger(case.roots[0], params=case.params)
    sin = dbg.graph.find("SinBackward0")[0]
    # a small capture carries every statistic in dbg.graph already (DESIGN §2's TensorSummary)
    assert sin.saved["_saved_self"].max == pytest.approx(2 * math.pi, rel=1e-6)  # type: ignore[union-attr]
    views = {v.key: v for v in dbg.inspect(sin.id).tensors}
    assert views["saved:_saved_self"].summary.max == pytest.approx(2 * math.pi, rel=1e-6)
    leaf = {v.key: v for v in dbg.inspect("leaf:input1").tensors}
    assert leaf["leaf:value"].summary.shape == (25,)


def test_big_captures_take_statistics_on_inspect() -> None:
    x = torch.linspace(-1.0, 1.0, EAGER_ELEMENTS + 1, requires_grad=True)  # past the eager allowance
    dbg = gs.debugger(x.sin().sum())
    sin = dbg.graph.find("SinBackward0")[0]
    saved = sin.saved["_saved_self"]
    assert saved.shape == (EAGER_ELEMENTS + 1,) and saved.min is None  # type: ignore[union-attr]  # lazy
    views = {v.key: v for v in dbg.inspect(sin.id).tensors}
    assert views["saved:_saved_self"].summary.min == pytest.approx(-1.0)


def test_graphs_past_eager_nodes_take_statistics_on_inspect() -> None:
    x = torch.linspace(-1.0, 1.0, 8, requires_grad=True)
    y = x
    for _ in range(EAGER_NODES):  # one small tensor per node: only the node count is past the limit
        y = y.sin()
    dbg = gs.debugger(y.sum())
    assert len(dbg.graph) > EAGER_NODES
    sins = dbg.graph.find("SinBackward0")
    assert all(n.saved["_saved_self"].min is None for n in sins)  # type: ignore[union-attr]
    views = {v.key: v for v in dbg.inspect(sins[0].id).tensors}
    assert views["saved:_saved_self"].summary.min is not None


def test_a_cifar_sized_resnet_takes_no_eager_statistics() -> None:
    """A real model's graph (8 residual blocks: 114 nodes) is not a small capture: its saved tensors'
    statistics wait for the click rather than cost ~3% of every run; a tutorial-sized one's do not."""
    from benchmarks.models import realistic

    model, x = realistic("resnet 8 blocks c32 32x32 b16 (typical)")
    dbg = gs.debugger(model, inputs=x[:2], loss=lambda out: out.pow(2).mean())
    assert EAGER_NODES < len(dbg.graph) <= 128
    saved = [s for n in dbg.graph.nodes for s in n.saved.values() if isinstance(s, gs.TensorSummary)]
    assert saved and all(s.min is None for s in saved)
    small = gs.debugger(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)),
                        inputs=torch.randn(3, 4), loss=torch.sum)  # fmt: skip
    assert any(s.min is not None for n in small.graph.nodes for s in n.saved.values()
               if isinstance(s, gs.TensorSummary))  # fmt: skip


class Sent:
    def __init__(self) -> None:
        self.messages: list[tuple[dict[str, Any], list[bytes]]] = []

    def __call__(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        self.messages.append((content, list(buffers or [])))


@pytest.fixture
def dbg_and_sent(monkeypatch: pytest.MonkeyPatch) -> tuple[gs.Debugger, Sent]:
    case = ZOO["seed_tiny_model"]()
    dbg = gs.debugger(case.roots[0], params=case.params)
    sent = Sent()
    monkeypatch.setattr(dbg, "send", sent)
    return dbg, sent


def test_inspect_request_is_answered_with_buffers(dbg_and_sent: tuple[gs.Debugger, Sent]) -> None:
    dbg, sent = dbg_and_sent
    dbg._on_msg(dbg, {"type": "inspect", "request_id": "r1", "node": "layer1/AddmmBackward0#0"}, [])
    ((reply, buffers),) = sent.messages
    assert reply["ok"] and reply["request_id"] == "r1" and reply["node"] == "layer1/AddmmBackward0#0"
    mat1 = next(t for t in reply["tensors"] if t["key"] == "saved:_saved_mat1")
    assert mat1["summary"]["shape"] == [16, 1000] and mat1["histogram"]["counts"]
    preview = mat1["preview"]
    assert len(buffers[preview["buffer"]]) == 4 * preview["shape"][0] * preview["shape"][1]


def test_values_request_returns_another_slice(dbg_and_sent: tuple[gs.Debugger, Sent]) -> None:
    dbg, sent = dbg_and_sent
    dbg._on_msg(dbg, {"type": "values", "request_id": "r2", "node": "layer1/AddmmBackward0#0",
                      "key": "saved:_saved_mat1", "index": []}, [])  # fmt: skip
    ((reply, buffers),) = sent.messages
    assert reply["ok"] and reply["preview"]["full_shape"] == [16, 1000] and len(buffers) == 1


@pytest.mark.parametrize(
    "content",
    [
        {"type": "inspect", "request_id": "x", "node": "NoSuchNode#0"},
        {"type": "inspect", "request_id": "x"},
        {
            "type": "values",
            "request_id": "x",
            "node": "layer1/AddmmBackward0#0",
            "key": "saved:_saved_mat1",
            "index": [99],
        },
        {"type": "values", "request_id": "x", "node": "layer1/AddmmBackward0#0", "key": "saved:nope", "index": []},
        {"type": "values", "request_id": "x", "node": "layer1/AddmmBackward0#0", "key": "k", "index": "0"},
        {"type": "explode", "request_id": "x"},
        "not even a dict",
    ],
)
def test_bad_requests_get_an_error_and_change_nothing(dbg_and_sent: tuple[gs.Debugger, Sent], content: Any) -> None:
    dbg, sent = dbg_and_sent
    graph, selected = dbg.graph, dbg.selected
    dbg._on_msg(dbg, content, [])
    ((reply, _),) = sent.messages
    assert reply["ok"] is False and reply["error"]
    assert dbg.graph is graph and dbg.selected == selected


def test_close_releases_kept_tensors() -> None:
    case = ZOO["seed_sin"]()
    dbg = gs.debugger(case.roots[0], params=case.params)
    store = dbg._captured.store
    assert len(store) > 0
    dbg.close()
    assert len(store) == 0


def test_histogram_bins_values_whose_range_overflows_their_dtype() -> None:
    # exploding float32 gradients: max - min = 6e38 is inf in float32 (histc then filled no bin)
    t = torch.tensor([-3e38, 3e38, 0.0, 1.0])
    h = histogram(t, summarize(t, stats=True))
    assert h is not None and h.counts[0] == 1 and h.counts[-1] == 1 and h.counts[BINS // 2] == 2
    big = torch.tensor([-1.5e308, 1.5e308, 0.0], dtype=torch.float64)  # range past float64's max
    h = histogram(big, summarize(big, stats=True))
    assert h is not None and (h.counts[0], h.counts[BINS // 2], h.counts[-1]) == (1, 1, 1)
    assert (h.min, h.max) == (-1.5e308, 1.5e308)


def test_a_float64_preview_keeps_values_float32_cannot_hold() -> None:
    t = torch.tensor([1e300, -1e300, 1.0, 1e-300, math.inf, math.nan], dtype=torch.float64)
    p = preview(t)
    assert p.dtype == "float64" and len(p.values) == 8 * 6
    v = values(p)
    assert v[:4].tolist() == [1e300, -1e300, 1.0, 1e-300] and v[4] == math.inf and math.isnan(v[5])
    assert preview(torch.tensor([1.0, 2.0], dtype=torch.float64)).dtype == "float32"  # fits: as before
    assert preview(torch.tensor([0.0, 1e-30], dtype=torch.float64)).dtype == "float32"


def test_block_averages_are_the_means_even_where_a_sum_overflows() -> None:
    t = torch.tensor([1e300, 3e300] * 1024 + [1e-300, 1e-300] * 1024, dtype=torch.float64)
    p = preview(t)
    assert p.block == (2,) and p.dtype == "float64"
    assert values(p)[0] == pytest.approx(2e300) and values(p)[-1] == pytest.approx(1e-300)
    huge = torch.full((4096,), 1.5e308, dtype=torch.float64)  # a float64 block sum is inf
    assert values(preview(huge)).tolist() == [1.5e308] * 2048
    # blocks of 4 float32 values whose running sums overflow float32
    f = torch.tensor(([3e38] * 4 + [-3e38, -3e38, 3e38, 3e38] + [3e38] * 3 + [math.nan] + [1.0] * 4) * 512)
    p = preview(f)
    v = values(p)
    assert p.block == (4,) and p.dtype == "float32"
    assert v[0] == pytest.approx(3e38) and v[1] == 0 and math.isnan(v[2]) and v[3] == 1  # a real NaN stays NaN
    shown = tensor_view("saved:x", "saved", "x", f, summarize(f)).preview  # its statistics bound the values
    assert shown is not None and np.array_equal(values(shown), v, equal_nan=True)
    nan = torch.randn(300, 300)
    nan[7, 7] = math.nan  # no value big enough to overflow: the NaN cell is real, taken once
    assert math.isnan(values(preview(nan))[2, 2]) and np.isfinite(values(preview(nan))).sum() == 100 * 100 - 1
    m = torch.full((300, 300), 3e38)
    m[0, 0] = -math.inf
    v2 = values(preview(m))
    assert v2[0, 0] == -math.inf and np.allclose(v2.reshape(-1)[1:], 3e38)


def test_a_float64_preview_travels_as_float64(dbg_and_sent: tuple[gs.Debugger, Sent]) -> None:
    dbg, sent = dbg_and_sent
    big = torch.tensor([1e300, -1e300, 1.0, 1e-300], dtype=torch.float64, requires_grad=True)
    dbg = gs.debugger((big * 2).sum(), params={"big": big})
    dbg.send = sent  # type: ignore[method-assign]
    dbg._on_msg(dbg, {"type": "inspect", "request_id": "r", "node": "leaf:big"}, [])
    ((reply, buffers),) = sent.messages
    p = next(t for t in reply["tensors"] if t["key"] == "leaf:value")["preview"]
    assert p["dtype"] == "float64"
    assert np.frombuffer(buffers[p["buffer"]], "<f8").tolist() == [1e300, -1e300, 1.0, 1e-300]
    dbg.close()


def test_histogram_of_a_big_tensor_bins_a_stride_sample() -> None:
    t = torch.randn(3_000_001)
    h = histogram(t, summarize(t))
    assert h is not None and h.stride == 4 and sum(h.counts) == len(range(0, 3_000_001, 4))


def test_the_budget_holds_what_it_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    # a dropped tensor's storage used to be counted as kept: later tensors there (or on its freed,
    # reused memory) were kept for free, past the budget
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 32))
    dbg = gs.debugger(model, inputs=torch.randn(256, 64), loss=lambda out: out.pow(2).mean(), memory_budget=5000)
    store = dbg._captured.store
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in store._tensors.values()}
    assert sum(held.values()) == dbg.graph.run.kept_bytes <= 5000
    assert dbg.graph.run.dropped > 0


def test_a_meta_tensor_is_inspected_as_shape_only() -> None:
    model = torch.nn.Linear(4, 2).to("meta")
    dbg = gs.debugger(model, inputs=torch.randn(3, 4, device="meta"), loss=lambda out: out.sum())
    views = dbg.inspect(dbg.graph.find("AddmmBackward0")[0].id).tensors
    assert views and all(not v.kept and v.note is not None and "meta tensor" in v.note for v in views)


def test_a_live_leafs_gradient_says_why_it_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    model = torch.nn.Linear(3, 2)
    dbg = gs.debugger(model)
    model(torch.randn(4, 3)).sum().backward()
    view = next(v for v in dbg.inspect("leaf:weight").tensors if v.key == "grad-in:0")
    assert not view.kept and view.note is not None and ".grad below shows it" in view.note
    dbg.close()


def test_an_all_nan_tensor_gets_its_counters_in_a_histogram() -> None:
    x = torch.tensor([float("nan")] * 3 + [float("inf")], requires_grad=True)
    dbg = gs.debugger((x * x).sum())
    view = next(v for v in dbg.inspect(dbg.graph.find("MulBackward0")[0].id).tensors if v.key == "saved:_saved_self")
    assert view.histogram is not None and (view.histogram.nan, view.histogram.posinf) == (3, 1)
    assert sum(view.histogram.counts) == 0 and view.histogram.min is None


def test_an_empty_leading_dim_has_no_slice_to_preview_and_says_so() -> None:
    w = torch.zeros(0, 3, 4, requires_grad=True)
    v = torch.zeros(2, 0, 4, requires_grad=True)
    dbg = gs.debugger(lambda: w.sum() + v.sum())
    (value,) = [t for t in dbg.inspect("leaf:w").tensors if t.key == "leaf:value"]
    assert value.preview is None and value.note == "empty: no values to show (shape (0, 3, 4))"
    (value,) = [t for t in dbg.inspect("leaf:v").tensors if t.key == "leaf:value"]
    assert value.preview is not None and value.preview.shape == (0, 4) and value.note is None
