"""Live mode: ``.grad`` that already held a gradient when a step's backward began. Across optimizer
steps (no ``zero_grad()``: an optimizer step uses the sum) is warned of once an optimizer step used
it, by the next step shown; within one optimizer step (a GAN's real and fake losses, two backward
calls before one step) is said without warning; the usual loop (zero_grad, forward, backward, step)
and a GAN's generator loss through D (whose optimizer zeroes D's .grad first) get neither."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from tests.run_zoo import MLP

ACROSS = "Gradients are accumulating across steps"
WITHIN = "added to the gradient an earlier backward call since the last optimizer step"


pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


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
    assert not notes(dbg, ACROSS) and not notes(dbg, WITHIN)  # (its optimizer step has not run yet)
    opt.step()  # uses the sum
    model(x).pow(2).mean().backward()
    across = notes(dbg, ACROSS)
    assert len(across) == 1 and "layer1.weight" in across[0] and "the optimizer step after step 6" in across[0]
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
        assert len(notes(dbg, ACROSS)) == (1 if i >= 2 else 0) and not notes(dbg, WITHIN)
    dbg.close()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_a_generator_loss_through_the_discriminator_is_no_accumulation(set_to_none: bool) -> None:
    """The DCGAN loop, the debugger on D: G's loss adds to the .grad D's optimizer step used, but
    od.zero_grad() clears it before od.step(): no optimizer step uses a sum across steps."""
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
    disc = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    og, od = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (gen, disc))
    bce = nn.BCEWithLogitsLoss()
    dbg = gs.debugger(disc)
    for _ in range(4):
        fake = gen(torch.randn(5, 4))
        od.zero_grad(set_to_none=set_to_none)
        ld = bce(disc(torch.randn(5, 6)), torch.ones(5, 1)) + bce(disc(fake.detach()), torch.zeros(5, 1))
        ld.backward()
        assert not notes(dbg, ACROSS), dbg.graph.notes
        od.step()
        og.zero_grad(set_to_none=set_to_none)
        bce(disc(fake), torch.ones(5, 1)).backward()  # through D into G: adds to the .grad od.step() used
        assert not notes(dbg, ACROSS), dbg.graph.notes
        og.step()
    assert dbg.graph.run.step == 8  # two backward calls per iteration, whatever the calls of D
    dbg.close()
