"""Live step numbers count training steps — backward passes — not calls of the model: a siamese step's
two calls are one step, a DQN target call and a validation forward left with gradients on (no
backward reaches them) are none, each micro-batch's backward of gradient accumulation is one, and the
notes that name a step (``.grad`` added to within and across optimizer steps, a backward that raised)
name the step the user counts. Each loop runs with every step captured, and with only its first and
last captured (the steps between are numbered by a hook on their outputs, ``live_mark``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from tests.run_zoo import MLP
from tests.test_live_failures import LOSS

ACROSS = "Gradients are accumulating across steps"
WITHIN = "added to the gradient an earlier backward call since the last optimizer step"


@pytest.fixture(params=["every step", "first and last"])
def captured(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which steps are captured: every one, or (an hour's interval) the first, then the last once
    :func:`last` lifts the limits as a cell's end does."""
    monkeypatch.setattr(gs.options, "live_interval", 0.0 if request.param == "every step" else 3600.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    return str(request.param)


def train(dbg: gs.Debugger, captured: str, steps: int, step: Callable[[int], None], *, tail: int = 1) -> None:
    """Run ``step`` (the i-th training step, from 1) ``steps`` times, with every step captured or (an
    hour's interval) the first and the last ``tail`` ones (the limits lifted before each, as a cell's
    end does); after each shown step the view, and ``.grad``'s history, show its number."""
    live = dbg._live
    assert live is not None
    for i in range(1, steps + 1):
        if i > steps - tail:
            live.cell_done()  # what IPython's post_run_cell calls: the next step is captured
        step(i)
        assert live.steps == i, (i, live.steps)
        if shown(captured, i, steps, tail):
            if captured == "every step":
                live.cell_done()  # (a siamese step's first call waits for the cell's end)
            assert dbg.graph.run.step == i and not live.errors, (i, dbg.graph.run.step, live.errors)
            assert dbg.inspect("leaf:layer1.weight").history[-1].step == i


def shown(captured: str, i: int, steps: int, tail: int = 1) -> bool:
    """Is step ``i`` of ``steps`` captured (see :func:`train`)?"""
    return captured == "every step" or i == 1 or i > steps - tail


def test_a_siamese_step_takes_one_number_per_iteration(captured: str) -> None:
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dbg = gs.debugger(model)

    def step(_: int) -> None:
        x1, x2 = torch.randn(4, 8), torch.randn(4, 8)
        opt.zero_grad()
        (model(x1) - model(x2)).pow(2).mean().backward()  # two calls, one backward
        opt.step()

    train(dbg, captured, 4, step)
    history = [h.step for h in dbg.inspect("leaf:layer1.weight").history]
    assert history == ([1, 2, 3, 4] if captured == "every step" else [1, 4])  # one entry per step, not per call
    dbg.close()


def test_a_dqn_target_call_without_backward_takes_no_number(captured: str) -> None:
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dbg = gs.debugger(model)

    def step(_: int) -> None:
        s, s2 = torch.randn(5, 8), torch.randn(5, 8)
        q = model(s)[:, 0]
        q_next = model(s2).max(1)[0].detach()  # gradients on, no backward: the target half of the step
        opt.zero_grad()
        F.smooth_l1_loss(q, 1.0 + 0.99 * q_next).backward()
        opt.step()

    train(dbg, captured, 4, step)
    dbg.close()


def test_a_validation_forward_left_with_gradients_on_takes_no_number(captured: str) -> None:
    torch.manual_seed(0)
    model, val = MLP(), torch.randn(16, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dbg = gs.debugger(model)
    losses = []

    def step(_: int) -> None:
        model.train()
        opt.zero_grad()
        model(torch.randn(4, 8)).pow(2).mean().backward()
        opt.step()
        model.eval()
        losses.append(model(val).pow(2).mean().detach())  # no torch.no_grad(): a graph nobody differentiates

    train(dbg, captured, 4, step)
    assert len(losses) == 4
    dbg.close()


def test_gradient_accumulation_numbers_each_micro_batchs_backward(captured: str) -> None:
    """k micro-batches per optimizer step, the train accuracy read after each step with gradients on:
    each backward is a step, the accuracy's forward none; a micro-batch after the first says its
    backward added to the earlier ones' .grad, naming its own number."""
    torch.manual_seed(0)
    model, k = MLP(), 3
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dbg = gs.debugger(model)

    def step(i: int) -> None:
        (model(torch.randn(4, 8)).pow(2).mean() / k).backward()
        if i % k == 0:  # the k-th micro-batch: the optimizer steps
            opt.step()
            opt.zero_grad()
            float((model(torch.randn(4, 8)).argmax(1) == 0).float().mean())  # accuracy, gradients on
        if shown(captured, i, 2 * k):
            within = [n for n in dbg.graph.notes if WITHIN in n]
            assert len(within) == (0 if i % k == 1 else 1), (i, dbg.graph.notes)
            assert all(n.startswith(f"Step {i}'s backward") for n in within), within

    train(dbg, captured, 2 * k, step)
    dbg.close()


def test_the_accumulation_note_names_the_steps_the_user_counts(captured: str) -> None:
    """zero_grad() forgotten in a DQN loop: the optimizer step after step i-1 used .grad holding step
    i-1's gradient added to what the step before used; step i's graph says so, with step i-1's number."""
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    dbg = gs.debugger(model)

    def step(i: int) -> None:
        s, s2 = torch.randn(5, 8), torch.randn(5, 8)
        q = model(s)[:, 0]
        q_next = model(s2).max(1)[0].detach()
        F.smooth_l1_loss(q, 1.0 + 0.99 * q_next).backward()  # no zero_grad() before it
        opt.step()
        if shown(captured, i, 5, tail=2):  # (the step after one captured says what its optimizer step used)
            across = [n for n in dbg.graph.notes if ACROSS in n]
            assert len(across) == (1 if i in (3, 4, 5) and shown(captured, i - 1, 5, tail=2) else 0), (i, across)
            assert all(f"the optimizer step after step {i - 1} used" in n for n in across), across

    train(dbg, captured, 5, step, tail=2)
    dbg.close()


def test_a_backward_that_raised_above_the_model_is_the_next_step(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pass reached the failed step (its loss raised first): it takes the next number all the same,
    not one counting the validation forwards before it; the next step that finishes takes the one after."""
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    torch.manual_seed(0)
    shell.user_ns.update(model=MLP(), x=torch.randn(3, 8))
    shell.run_cell(LOSS + "dbg = __import__('gradsight').debugger(model)\nmodel(x).sum().backward()\nmodel(x)")
    dbg = shell.user_ns["dbg"]
    assert dbg.graph.run.step == 1 and dbg.status == "ready"
    result = shell.run_cell("model(x)\nBroken.apply(model(x)).sum().backward()")
    assert type(result.error_in_exec) is ValueError
    assert dbg.graph.run.step == 2 and dbg.status == "error"
    assert "live step 2 raised ValueError: the loss's backward broke" in dbg.error
    assert any(n.startswith("Step 2's backward raised") for n in dbg.graph.notes), dbg.graph.notes
    shell.run_cell("model(x)\nmodel(x).sum().backward()")
    assert dbg.graph.run.step == 3 and dbg.status == "ready" and dbg._live.steps == 3
    dbg.close()
