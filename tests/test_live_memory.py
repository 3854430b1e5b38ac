"""Live mode over many steps: finished steps are freed by reference counting, and captures leave
the cyclic GC's own schedule alone (the user's garbage is collected as without gradsight)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import gradsight as gs

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def test_finished_steps_are_freed_without_the_cyclic_gc(no_cyclic_gc: None) -> None:
    model = _model()
    dbg = gs.debugger(model)
    batches = []
    for _ in range(30):
        x = torch.randn(16, 32)
        batches.append(weakref.ref(x))
        model(x).pow(2).sum().backward()
        del x
    alive = sum(ref() is not None for ref in batches)
    # the run history keeps 8 steps' saved tensors (the input is one), and the last step's call
    assert alive <= 10, f"{alive} of 30 batches alive"
    dbg.close()
    assert sum(ref() is not None for ref in batches) == 0


def test_live_captures_leave_the_gc_schedule_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # gc.freeze() + gc.unfreeze() moves young objects to the oldest generation without counting them
    # toward a full collection: once per debugger it saves scanning a big graph twice, every step
    # it stopped full collections (the user's cyclic garbage, and each step's, stayed).
    freezes: list[int] = []
    real = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (freezes.append(1), real())[1])
    model = _model()
    dbg = gs.debugger(model, inputs=torch.randn(4, 32), loss=lambda o: o.sum())
    assert freezes, "the runnable debugger's capture promotes its objects once"
    dbg.close()
    freezes.clear()
    live = gs.debugger(model)
    for _ in range(5):
        model(torch.randn(4, 32)).sum().backward()
    assert live.graph.run.step == 5
    assert freezes == []
    live.close()


def test_a_captured_steps_own_work_sets_off_few_collections() -> None:
    """gradsight's own work on a captured step (collecting and hooking the graph, building and
    publishing it, the view's JSON and diff) runs with the cyclic GC paused: left on, its transient
    objects set off ~31 young collections per step of a 500-node graph, whose survivors, promoted,
    set off a full collection of the whole session every few steps (13 in 40 steps of a 1k-node
    transformer: a quarter of the time). What stays is the backward hooks' own (~9 per step)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(100) for m in (nn.Linear(16, 16), nn.Tanh())])
    x = torch.randn(4, 16)
    live = gs.debugger(model)
    model(x).pow(2).mean().backward()
    counts = [0, 0, 0]

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            counts[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(count)
    try:
        for _ in range(10):
            model(x).pow(2).mean().backward()
    finally:
        gc.callbacks.remove(count)
    assert len(live.graph.nodes) == 500 and live.graph.run.step == 11
    assert sum(counts) <= 10 * 18, counts
    live.close()
