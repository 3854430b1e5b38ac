"""Live mode: ``.grad`` that already held a gradient when a step's backward began. Across optimizer
steps (no ``zero_grad()``: the optimizer uses the sum again) is warned of; within one optimizer step
(a GAN's real and fake losses, two backward calls before one step) is said without warning; the
usual loop (zero_grad, forward, backward, step) gets neither."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from tests.run_zoo import MLP

ACROSS = "Gradients are accumulating across steps"
WITHIN = "added to the gradient an earlier backward call since the last optimizer step"


@pytest.fixture(autouse=True)
def every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)  # capture every step in tests
    monkeypatch.setattr(gs.options, "live_share", 1.0)


def notes(dbg: gs.Debugger, text: str) -> list[str]:
    return [n for n in dbg.graph.notes if text in n]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_discriminators_real_and_fake_backward_in_one_step_is_no_warning(set_to_none: bool) -> None:
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    dbg = gs.debugger(disc)
    for i in range(3):
        opt.zero_grad(set_to_none=set_to_none)
        disc(torch.randn(6, 4)).mean().neg().backward()  # real
        assert dbg.graph.run.step == 2 * i + 1 and not notes(dbg, ACROSS) and not notes(dbg, WITHIN)
        disc(torch.randn(6, 4)).mean().backward()  # fake: adds to the real loss's .grad
        assert dbg.graph.run.step == 2 * i + 2 and not notes(dbg, ACROSS), dbg.graph.notes
        within = notes(dbg, WITHIN)
        assert len(within) == 1 and "0.weight" in within[0] and "2.bias" in within[0]
        opt.step()
    dbg.close()


def test_two_backward_calls_before_one_step_are_no_warning_but_a_forgotten_zero_grad_is() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(2):  # gradient accumulation over two batches, zeroed after each step
        model(x).pow(2).mean().backward()
        model(x).pow(2).mean().backward()
        assert not notes(dbg, ACROSS) and len(notes(dbg, WITHIN)) == 1
        opt.step()
        opt.zero_grad()
    # the same loop forgetting zero_grad(): the first backward after the step adds to the used .grad
    model(x).pow(2).mean().backward()
    assert not notes(dbg, ACROSS) and not notes(dbg, WITHIN)  # (.grad was None: zeroed)
    opt.step()
    model(x).pow(2).mean().backward()
    across = notes(dbg, ACROSS)
    assert len(across) == 1 and "layer1.weight" in across[0] and "before the last optimizer step" in across[0]
    assert not notes(dbg, WITHIN)
    dbg.close()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_the_usual_loop_never_gets_a_note_and_the_forgotten_zero_grad_loop_always_does(set_to_none: bool) -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(4):
        opt.zero_grad(set_to_none=set_to_none)
        model(x).pow(2).mean().backward()
        opt.step()
        assert not notes(dbg, ACROSS) and not notes(dbg, WITHIN)
    dbg.close()
    forgot = MLP()
    opt = torch.optim.SGD(forgot.parameters(), lr=0.1)
    dbg = gs.debugger(forgot)
    for i in range(4):
        forgot(x).pow(2).mean().backward()
        opt.step()
        assert len(notes(dbg, ACROSS)) == (1 if i else 0) and not notes(dbg, WITHIN)
    dbg.close()
