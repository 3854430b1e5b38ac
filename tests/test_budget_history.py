"""The memory budget is the debugger's: the run history (re-runs, live steps) holds no more than it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import gradsight as gs


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _held(dbg: Any) -> int:
    """Bytes of the storages every run's kept tensors hold together (each storage once)."""
    storages: dict[int, int] = {}
    for record in dbg._runs.records:
        store = getattr(record.captured, "store", None)
        for t in [] if store is None else store._tensors.values():
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
    return sum(storages.values())


BUDGET = 600_000  # one run of the model keeps ~470 kB of this: two do not fit


def test_reruns_share_the_debuggers_budget() -> None:
    model = _model()
    dbg = gs.debugger(model, inputs=torch.randn(64, 256), loss=lambda o: o.pow(2).sum(), memory_budget=BUDGET)
    first = dbg.graph.run.kept_bytes
    assert BUDGET / 2 < first <= BUDGET  # one run alone fills more than half the budget
    for i in range(6):
        dbg.rerun(requires_grad={"0": bool(i % 2)})
        assert _held(dbg) <= BUDGET, f"after re-run {i + 1}: {_held(dbg)} bytes held for a {BUDGET}-byte budget"
    assert len(dbg._runs.records) == 7
    assert dbg.graph.run.kept_bytes == first  # the newest run keeps what a lone run keeps
    oldest = dbg._runs.records[0]
    assert oldest.captured.store.evicted and len(oldest.captured.store) == 0
    # clicking a node of that run re-runs its step to get the values back, within the budget still
    dbg.current = oldest.index
    addmm = dbg.graph.find("AddmmBackward0")[0]
    assert all(v.kept for v in dbg.inspect(addmm.id).tensors if v.section in ("saved", "grad-out"))
    assert _held(dbg) <= BUDGET
    dbg.close()


def test_live_steps_share_the_debuggers_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    model = _model()
    dbg = gs.debugger(model, memory_budget=BUDGET)
    for _ in range(6):
        model(torch.randn(64, 256)).pow(2).sum().backward()
    assert len(dbg._runs.records) >= 4
    assert _held(dbg) <= BUDGET, f"{_held(dbg)} bytes held for a {BUDGET}-byte budget"
    assert dbg._runs.records[-1].captured.store.kept_bytes > BUDGET / 2  # the last step is inspectable
    # an older step still shows its graph; its tensors say why they are gone
    dbg.current = dbg._runs.records[0].index
    addmm = dbg.graph.find("AddmmBackward0")[0]
    assert addmm.grad_norm is not None
    notes = {v.key: v.note for v in dbg.inspect(addmm.id).tensors}
    assert notes and all(n is not None and "newer runs use its memory budget" in n for n in notes.values()), notes
    dbg.close()


def test_storages_shared_by_runs_count_once() -> None:
    # The weights autograd saves are the same storages in every run: two runs hold them once. A
    # budget that fits both runs counted that way keeps both, though their kept bytes add up to more.
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512))
    x = torch.randn(1, 512)
    probe = gs.debugger(model, inputs=x, loss=lambda o: o.sum())
    probe.rerun(requires_grad={"0": True})
    together = _held(probe)
    summed = sum(r.captured.store.kept_bytes for r in probe._runs.records)
    probe.close()
    assert together < summed - 1_000_000  # the weights: 1 MiB each, saved by both runs
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.sum(), memory_budget=together)
    dbg.rerun(requires_grad={"0": True})
    first = dbg._runs.records[0].captured.store
    assert not first.evicted and len(first) > 0
    assert _held(dbg) == together
    dbg.close()


def test_past_the_budget_a_hook_takes_no_statistics() -> None:
    # A gradient met in a backward hook once the budget is full keeps the hook's norm only: the six
    # reductions of full statistics cost 3-13x the backward (research/autograd-facts.md §5).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 1))
    dbg = gs.debugger(model, inputs=torch.randn(1024, 256), loss=lambda o: o.sum(), memory_budget=64 << 10)
    tanh = dbg.graph.find("TanhBackward0")[0]
    grad = tanh.grad_in[0]
    assert dbg.graph.run.dropped > 0 and grad is not None
    assert grad.norm is not None and grad.norm > 0
    assert grad.min is None and grad.std is None
    dbg.close()


def test_a_key_offered_again_counts_once() -> None:
    # A live step's later backward pass offers the same gradient keys again: the last tensor counts.
    from gradsight._capture.store import TensorStore

    store = TensorStore(1 << 20)
    first, second = torch.ones(1000), torch.ones(1000)
    store.offer((0, "grad-in:0"), first)
    store.offer((0, "grad-in:0"), second)
    assert store.kept_bytes == 4000 and store.get((0, "grad-in:0")) is second
    # two keys in one storage: it goes when neither uses it
    base = torch.ones(2000)
    store.offer((1, "saved:_saved_self"), base[:1000])
    store.offer((2, "saved:_saved_self"), base[1000:])
    assert store.kept_bytes == 4000 + 8000
    store.offer((1, "saved:_saved_self"), torch.ones(10))
    assert store.kept_bytes == 4000 + 8000 + 40  # base still kept by node 2
    store.offer((2, "saved:_saved_self"), torch.ones(10))
    assert store.kept_bytes == 4000 + 40 + 40


def test_a_small_graphs_tensors_past_the_budget_say_so() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 10), nn.ReLU(), nn.Linear(10, 1))
    dbg = gs.debugger(model, inputs=torch.randn(4, 100), loss=lambda o: o.pow(2).sum(), memory_budget=1000)
    views = dbg.inspect("0/AddmmBackward0#0").tensors
    notes = [v.note for v in views if not v.kept]
    assert notes and all(n is not None and "past the memory budget" in n for n in notes), notes
    dbg.close()


def test_a_storage_resized_since_it_was_kept_is_forgotten_by_where_it_was_kept() -> None:
    # FSDP frees a parameter's storage with resize_(0): its bytes must still leave the count.
    from gradsight._capture.store import TensorStore

    store = TensorStore(1 << 20)
    t = torch.ones(1000)
    store.offer((0, "saved:_saved_self"), t)
    t.untyped_storage().resize_(0)
    store.offer((0, "saved:_saved_self"), torch.ones(10))
    assert store.kept_bytes == 40
