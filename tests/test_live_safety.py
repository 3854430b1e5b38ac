"""Live mode under trouble: a Ctrl-C during a step's capture, a backward finishing on another thread,
a backward that raises above the model, failures on several threads — hooks come off, and what the
view says is true."""

from __future__ import annotations

import pytest
import torch

import gradsight as gs
from gradsight._capture import live_step
from tests.run_zoo import MLP

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def _hooks(model: torch.nn.Module) -> dict[str, int]:
    return {n: len(p._backward_hooks or {}) for n, p in model.named_parameters()}


def test_a_keyboard_interrupt_after_a_step_is_hooked_leaves_no_hooks_after_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C lands in gradsight's capture after the step's hooks went on, before the session holds it
    model = MLP()
    dbg = gs.debugger(model)

    def interrupted(self: live_step.LiveStep, names: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(live_step.LiveStep, "watch_hidden", interrupted)
        with pytest.raises(KeyboardInterrupt):
            model(torch.randn(2, 8))
    assert set(_hooks(model).values()) == {0}
    model.zero_grad()
    model(torch.randn(2, 8)).sum().backward()  # training goes on, and shows
    assert dbg.graph.run.step == 1 and len(dbg.graph) > 0
    dbg.close()
    assert set(_hooks(model).values()) == {0}
    assert all(p._backward_hooks is None for p in model.parameters())


class InPlace(torch.nn.Module):
    """Its backward raises torch's "modified by an inplace operation" error while ``broken``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 1)
        self.broken = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc1(x))
        h = h.mul_(2) if self.broken else h * 2
        return self.fc2(h)


def test_a_failing_view_callback_never_raises_into_the_users_forward() -> None:
    from gradsight._capture.live import LiveSession

    model, x = InPlace(), torch.randn(5, 4)
    shown: list[object] = []

    def failed(error: str | None) -> None:
        raise ValueError("the view broke")

    session = LiveSession(model, shown.append, budget=1 << 20, interval=0.0, source_lines=False, failed=failed)
    with pytest.raises(RuntimeError, match="inplace operation"):
        model(x).sum().backward()
    model.broken = False
    model(x).sum().backward()  # the failed step is shown at this call: the callback's error stays gradsight's
    assert len(shown) >= 1 and any("ValueError: the view broke" in e for e in session.errors)
    session.close()
