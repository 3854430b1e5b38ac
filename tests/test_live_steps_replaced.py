"""A live debugger replaced by a newer one of its model stays replaced: whatever writes its status or
error later (a re-run from the view or from Python, one that fails or has nothing to replay, a value
the view may not write) leaves the "Replaced" banner in place and puts no live hook back. A re-run
still replays the last step it recorded, without the newer session counting it as a step."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import gradsight as gs
from gradsight._api import REPLACED
from tests.run_zoo import MLP
from tests.test_live_sessions import model_hooks

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


class Seen:
    """Every value ``status`` and ``error`` took (what the view was sent), and the view's replies."""

    def __init__(self, dbg: gs.Debugger) -> None:
        self.status: list[str] = []
        self.error: list[str] = []
        self.replies: list[dict[str, Any]] = []
        dbg.observe(lambda change: getattr(self, change["name"]).append(change["new"]), names=["status", "error"])

    def __call__(self, content: dict[str, Any], buffers: Any = None) -> None:  # dbg.send
        self.replies.append(content)


def test_a_rerun_of_a_replaced_live_debugger_replays_its_last_step_and_stays_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    first = gs.debugger(model)
    model(x).pow(2).sum().backward()
    newer = gs.debugger(model)
    hooks, grads = model_hooks(model), [p.grad.clone() for p in model.parameters()]
    assert first.status == "error" and first.error == REPLACED
    seen = Seen(first)
    monkeypatch.setattr(first, "send", seen)
    first._on_msg(first, {"type": "rerun", "request_id": "r", "after_run": first.graph.run.index}, [])  # Re-run
    assert seen.replies[-1]["ok"] is True and seen.replies[-1]["run"] == first.graph.run.index == 1
    graph = first.rerun(requires_grad={"layer1.weight": False})  # and from Python, with a what-if
    assert first.graph is graph and graph.run.index == 2 and graph.node("leaf:layer1.bias").executed
    assert "layer1.weight" not in {n.leaf.name for n in graph.leaves if n.leaf is not None}
    # the view said "Replaced" all along (status "running" while each re-run ran), and still does
    assert first.status == "error" and first.error == REPLACED
    assert set(seen.status) == {"running", "error"} and all(e.startswith(REPLACED) for e in seen.error)
    # no live hook came back, the newer session saw no step, the user's gradients are as they were
    assert model_hooks(model) == hooks and newer._live.steps == 0 and newer.graph.run.step == 0
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    model(x).pow(2).sum().backward()
    assert newer.graph.run.step == 1 and newer.status == "ready"
    assert len(first.history) == 3 and first.error == REPLACED  # it follows no step
    for dbg in (first, newer):
        dbg.close()
    assert model_hooks(model) == 0


class Breaks(MLP):
    broken = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.broken:
            raise ValueError("the batch is gone")
        return super().forward(x)


def test_a_replaced_debuggers_failing_rerun_and_refused_writes_say_both() -> None:
    torch.manual_seed(0)
    model, x = Breaks(), torch.randn(3, 8)
    first = gs.debugger(model)
    model(x).sum().backward()
    newer = gs.debugger(model)
    model.broken = True
    with pytest.raises(gs.RerunError, match="the batch is gone"):
        first.rerun()
    assert first.status == "error" and first.error.startswith(REPLACED) and "the batch is gone" in first.error
    first.set_state({"status": "ready", "error": ""})  # the view may not write these: refused, and said so
    assert first.status == "error" and first.error.startswith(REPLACED) and "status, error" in first.error
    first._on_msg(first, {"type": "rerun", "request_id": "r", "after_run": "x"}, [])  # a malformed request
    assert first.status == "error" and first.error.startswith(REPLACED)
    for dbg in (first, newer):
        dbg.close()


def test_a_live_debugger_replaced_before_any_step_says_so_after_a_rerun_with_nothing_to_replay() -> None:
    model = MLP()
    first = gs.debugger(model)
    newer = gs.debugger(model)
    with pytest.raises(gs.RerunError, match="Nothing to re-run yet"):
        first.rerun()
    # the view's status stays "error": its banner gives the reason (the reply's message is not shown then)
    assert first.status == "error" and first.error.startswith(REPLACED) and "Nothing to re-run yet" in first.error
    assert len(first.history) == 0 and model_hooks(model) == 2  # the newer session's two hooks only
    for dbg in (first, newer):
        dbg.close()
