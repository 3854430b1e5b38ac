"""Live mode: a training step that calls the model more than once before its backward — a second
call whose output needs no backward (a DQN target without a target network, a stop-gradient
branch, a metric forward left with gradients on) and a siamese step (both calls in one loss)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import gradsight as gs
from tests.run_zoo import MLP

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def hooked(model: torch.nn.Module) -> list[str]:
    """Parameters that carry a tensor hook (gradsight's: the tests add none)."""
    return [name for name, p in model.named_parameters() if p._backward_hooks]


def dqn_step(model: torch.nn.Module, opt: torch.optim.Optimizer, s: torch.Tensor, s2: torch.Tensor) -> None:
    q = model(s)[:, 0]
    q_next = model(s2).max(1)[0].detach()  # grad on, no backward: the target half of the step
    loss = F.smooth_l1_loss(q, 1.0 + 0.99 * q_next)
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_a_second_call_whose_output_gets_no_backward_does_not_hide_the_step() -> None:
    """Each cell shows the step of the call the backward ran: its graph, its gradients (as a plain copy
    of the loop gets them), its number; the detached call's step is dropped at the cell's end with
    its hooks."""
    torch.manual_seed(0)
    model, s, s2 = MLP(), torch.randn(5, 8), torch.randn(5, 8)
    plain = copy.deepcopy(model)
    opt, plain_opt = (torch.optim.SGD(m.parameters(), lr=0.1) for m in (model, plain))
    dbg = gs.debugger(model)
    assert dbg._live is not None
    for cell in (1, 2, 3):
        dqn_step(model, opt, s, s2)
        dqn_step(plain, plain_opt, s, s2)
        dbg._live.cell_done()
        graph = dbg.graph
        assert graph.run.step == cell and dbg.status == "ready" and not dbg._live.errors
        assert all(n.executed for n in graph.nodes) and not graph.missing
        assert not any("earlier call" in n for n in graph.notes)
        for name, p in plain.named_parameters():
            assert p.grad is not None
            assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(float(p.grad.norm()), rel=1e-5)
            assert dbg.inspect(f"leaf:{name}").history[-1].step == cell
        assert not dbg._live._ends.waiting  # the target call's step: dropped at the cell's end
    for p, q in zip(model.parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q)
    dbg.close()
    assert not hooked(model)


def test_a_step_waiting_for_its_backward_is_dropped_by_the_next_capture_with_its_hooks() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    assert dbg._live is not None
    model(x)
    first = dbg._live._ends.step
    model(x)
    assert first is not None and dbg._live._ends.waiting == [first] and not first.closed
    model(x)  # a third call: the first got no backward, the second waits now
    assert first.closed and first.recorder._closed and dbg._live._ends.waiting != [first]
    dbg.close()
    assert not hooked(model) and dbg.graph.run.step == 0  # no backward came: nothing shown


def test_a_siamese_step_is_one_step_and_says_its_first_call_is_not_drawn() -> None:
    torch.manual_seed(0)
    model, x1, x2 = MLP(), torch.randn(3, 8), torch.randn(3, 8)
    dbg = gs.debugger(model)
    assert dbg._live is not None
    a, b = model(x1), model(x2)
    (a - b).pow(2).sum().backward()
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 1 and not dbg._live.errors
    assert sum("earlier call of the model" in n for n in graph.notes) == 1, graph.notes
    history = dbg.inspect("leaf:layer1.weight").history
    assert [h.step for h in history] == [1]  # one entry for the one backward, not one per call
    assert model.layer1.weight.grad is not None
    assert history[-1].grad_norm == pytest.approx(float(model.layer1.weight.grad.norm()), rel=1e-6)
    assert not dbg._live._ends.waiting and not hooked(model)
    dbg.close()


def test_a_call_on_the_models_own_output_is_drawn_and_needs_no_note() -> None:
    """A recurrent use: the second call's graph holds the first call's, which is drawn."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh())
    dbg = gs.debugger(model)
    assert dbg._live is not None
    model(model(torch.randn(2, 4))).sum().backward()
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 1 and not any("earlier call" in n for n in graph.notes), graph.notes
    assert sum(n.name == "AddmmBackward0" for n in graph.nodes) == 2
    dbg.close()
    assert not hooked(model)


def test_a_waiting_step_whose_backward_raises_is_shown_failed_with_its_hooks_off() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    assert dbg._live is not None

    def broken(_: torch.Tensor) -> None:
        raise ValueError("the user's hook broke")

    handle = model.layer1.weight.register_hook(broken)
    out = model(x)
    model(x).detach()  # the second call: the first step waits for its backward
    with pytest.raises(ValueError, match="hook broke"):
        out.sum().backward()
    handle.remove()
    model(x)  # the thread goes on: the waiting step's pass raised
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 1 and dbg.status == "error" and "step 1 raised" in dbg.error
    assert graph.node("layer2/AddmmBackward0#0").executed
    assert not dbg._live._ends.waiting
    dbg.close()
    assert not hooked(model)
