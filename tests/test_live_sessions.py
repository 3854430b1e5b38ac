"""Live mode: one live session per model. Re-running the cell ``dbg = gs.debugger(model)`` replaces
the last live debugger of the model (its hooks come off, its view says so and keeps its steps)
instead of stacking sessions whose hooks and costs add up and outlive ``dbg.close()``."""

from __future__ import annotations

import pytest
import torch
import torch.optim.optimizer as optim_hooks

import gradsight as gs
from tests.run_zoo import MLP

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def model_hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def optimizer_hooks() -> int:
    return len(optim_hooks._global_optimizer_pre_hooks) + len(optim_hooks._global_optimizer_post_hooks)


def test_a_new_live_debugger_of_a_model_replaces_the_last() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    before = optimizer_hooks()
    first = gs.debugger(model)
    one = model_hooks(model), optimizer_hooks()
    model(x).sum().backward()
    assert first.graph.run.step == 1
    dbgs = [first, gs.debugger(model), gs.debugger(model)]  # the same cell, run three times
    assert (model_hooks(model), optimizer_hooks()) == one  # one session's hooks, not three
    for old in dbgs[:2]:
        assert old.status == "error" and "Replaced" in old.error
    assert first.graph.run.step == 1 and first.inspect("leaf:layer1.weight").history  # its steps stay
    newest = dbgs[-1]
    model(x).sum().backward()
    assert newest.graph.run.step == 1 and newest.status == "ready"
    assert first.graph.run.step == 1  # the replaced views follow no more steps
    newest.close()
    assert model_hooks(model) == 0 and optimizer_hooks() == before
    for old in dbgs[:2]:
        old.close()  # (closing a replaced view is harmless)


def test_live_debuggers_of_two_models_are_both_kept() -> None:
    torch.manual_seed(0)
    a, b, x = MLP(), MLP(), torch.randn(3, 8)
    dbg_a, dbg_b = gs.debugger(a), gs.debugger(b)
    a(x).sum().backward()
    b(x).sum().backward()
    assert dbg_a.graph.run.step == 1 and dbg_b.graph.run.step == 1
    assert dbg_a.status == dbg_b.status == "ready" and dbg_a._live is not None
    runnable = gs.debugger(a, inputs=x)  # a runnable debugger of the model follows nothing: no replacement
    assert dbg_a._live is not None and dbg_a.status == "ready"
    for dbg in (dbg_a, dbg_b, runnable):
        dbg.close()
    assert model_hooks(a) == model_hooks(b) == 0
