"""Live mode: what a step's graph says beyond its gradients — a backward that raised, gradients
accumulating across steps (no ``zero_grad()``), each leaf's ``.grad`` after the step, and what a
live re-run computes."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn
from torch.optim import optimizer as optimizer_hooks

import gradsight as gs
from gradsight._capture.live import LiveSession
from gradsight._capture.live_notes import changed_parameters, rerun_note
from gradsight._capture.records import Captured
from tests.run_zoo import MLP

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


class InPlace(nn.Module):
    """Edits a saved output in place (``h.mul_(2)`` on sigmoid's output) when ``broken``: its backward
    raises torch's "modified by an inplace operation" error."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 1)
        self.broken = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc1(x))
        h = h.mul_(2) if self.broken else h * 2
        return self.fc2(h)


def torch_error(model: InPlace, x: torch.Tensor) -> str:
    """The error the same step raises without gradsight."""
    plain = copy.deepcopy(model)
    with pytest.raises(RuntimeError) as info:
        plain(x).sum().backward()
    return str(info.value)


# -- a backward that raises -------------------------------------------------------------------------


def test_a_step_whose_backward_raises_is_shown_with_its_error(shell: InteractiveShell) -> None:
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(5, 4)
    expected = torch_error(model, x)
    shell.user_ns.update(model=model, x=x)
    shell.run_cell("dbg = __import__('gradsight').debugger(model)")
    dbg = shell.user_ns["dbg"]
    result = shell.run_cell("loss = model(x).sum()\nloss.backward()")
    # the user's exception comes out unchanged: gradsight's hooks never raise into the backward
    assert type(result.error_in_exec) is RuntimeError and str(result.error_in_exec) == expected
    graph = dbg.graph
    assert graph.run.step == 1 and len(graph) > 0 and graph.message is None
    assert any("backward raised" in n and "modified by an inplace operation" in n for n in graph.notes)
    assert "modified by an inplace operation" in dbg.error and "step 1" in dbg.error
    assert graph.node("fc2/AddmmBackward0#0").executed is True  # it ran before the error
    assert graph.node("leaf:fc1.weight").executed is False  # never reached
    assert dbg._live._ends.step is None and not any(p._backward_hooks for p in model.parameters())
    # the next step that finishes replaces it, and the error goes
    model.broken = False
    model.zero_grad()
    shell.run_cell("model(x).sum().backward()")
    graph = dbg.graph
    assert graph.run.step == 2 and not any("raised" in n for n in graph.notes) and dbg.error == ""
    assert graph.node("leaf:fc1.weight").executed is True
    dbg.close()


def test_the_failed_callback_gets_the_error_then_none_for_the_next_good_step(shell: InteractiveShell) -> None:
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(5, 4)
    shown: list[Captured] = []
    failed: list[str | None] = []
    shell.user_ns.update(model=model, x=x)
    session = LiveSession(model, shown.append, budget=1 << 20, interval=0.0, source_lines=False,
                          failed=failed.append)  # fmt: skip
    shell.run_cell("model(x).sum().backward()")
    assert len(shown) == 1 and len(failed) == 1
    assert failed[0] is not None and failed[0].startswith("The backward of live step 1 raised RuntimeError")
    model.broken = False
    shell.run_cell("model(x).sum().backward()")
    assert len(shown) == 2 and failed[1] is None
    session.close()


def test_without_a_shell_a_caught_backward_error_shows_at_the_next_call() -> None:
    """A script's loop catches the error and goes on: the step shows when the model is called next
    (gradsight did not see the exception, and says so), and that step replaces it once it ends."""
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(5, 4)
    dbg = gs.debugger(model)
    with pytest.raises(RuntimeError, match="inplace operation"):
        model(x).sum().backward()
    assert dbg.graph.run.step == 0  # nothing ended it yet
    model.broken = False
    out = model(x)
    graph = dbg.graph
    assert graph.run.step == 1 and any("stopped before it ended" in n for n in graph.notes)
    assert "did not see" in dbg.error
    out.sum().backward()
    assert dbg.graph.run.step == 2 and dbg.error == ""
    dbg.close()


def test_a_training_threads_backward_that_raised_shows_once_the_thread_is_gone() -> None:
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(5, 4)
    dbg = gs.debugger(model)
    caught: list[BaseException] = []

    def train() -> None:
        try:
            model(x).sum().backward()
        except RuntimeError as e:
            caught.append(e)

    worker = threading.Thread(target=train)
    worker.start()
    worker.join(10)
    assert len(caught) == 1 and dbg.graph.run.step == 0  # only the debugger's thread shows steps
    dbg._live.cell_done()  # the end of the cell, on the kernel's thread
    graph = dbg.graph
    assert graph.run.step == 1 and any("stopped before it ended" in n for n in graph.notes)
    dbg.close()


def test_a_backward_interrupted_and_retried_in_the_same_cell_is_not_a_failure(shell: InteractiveShell) -> None:
    shell.user_ns["model"] = MLP()
    shell.run_cell("dbg = __import__('gradsight').debugger(model)")
    shell.run_cell(
        "stop = [True]\n"
        "def hook(g):\n"
        "    if stop[0]:\n"
        "        raise KeyboardInterrupt\n"
        "h = model.layer2.weight.register_hook(hook)\n"
        "loss = model(torch.randn(3, 8)).sum()\n"
        "try:\n"
        "    loss.backward(retain_graph=True)\n"
        "except KeyboardInterrupt:\n"
        "    stop[0] = False\n"
        "loss.backward()\n"
        "h.remove()"
    )
    dbg = shell.user_ns["dbg"]
    assert dbg.graph.run.step == 1 and not any("raised" in n for n in dbg.graph.notes) and dbg.error == ""
    dbg.close()


# -- gradients accumulating across steps -------------------------------------------------------------


def train(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, *, zero: bool) -> None:
    if zero:
        opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


def test_gradients_accumulating_across_steps_are_said_once_with_the_parameters() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    train(model, opt, x, zero=False)
    assert not any("accumulating" in n for n in dbg.graph.notes)  # .grad was None: nothing to add to
    train(model, opt, x, zero=False)  # adds to the .grad the first optimizer step used; its step uses the sum
    assert not any("accumulating" in n for n in dbg.graph.notes)  # (shown before its optimizer step)
    train(model, opt, x, zero=False)
    notes = [n for n in dbg.graph.notes if "accumulating" in n]
    assert dbg.graph.run.step == 3
    assert len(notes) == 1 and "optimizer.zero_grad()" in notes[0] and "the optimizer step after step 2" in notes[0]
    for name in ("layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"):
        assert name in notes[0]
    dbg.close()


@pytest.mark.parametrize("set_to_none", [True, False])
def test_no_accumulation_note_when_the_loop_zeroes_its_gradients(set_to_none: bool) -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(3):
        opt.zero_grad(set_to_none=set_to_none)
        model(x).pow(2).mean().backward()
        opt.step()
    assert dbg.graph.run.step == 3 and not any("accumulating" in n for n in dbg.graph.notes)
    # zero_grad() between the forward and the backward is in time too
    out = model(x)
    opt.zero_grad(set_to_none=set_to_none)
    out.pow(2).mean().backward()
    assert dbg.graph.run.step == 4 and not any("accumulating" in n for n in dbg.graph.notes)
    dbg.close()


# -- parameters no optimizer updates ---------------------------------------------------------------


def encoder_and_head() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("enc", nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8)))
    model.add_module("head", nn.Linear(8, 1))
    return model


def test_parameters_that_get_gradients_but_are_in_no_optimizer_are_named() -> None:
    model, x = encoder_and_head(), torch.randn(16, 4)
    opt = torch.optim.SGD(model.enc.parameters(), lr=0.1)  # the head left out: it never trains
    hooks = dict(optimizer_hooks._global_optimizer_post_hooks)
    dbg = gs.debugger(model)
    train(model, opt, x, zero=True)
    assert not any("no optimizer" in n for n in dbg.graph.notes)  # shown before its opt.step(): none seen yet
    head = model.head.weight.detach().clone()
    train(model, opt, x, zero=True)  # one optimizer step since step 1: too few to say it never trains
    assert not any("no optimizer" in n for n in dbg.graph.notes)
    train(model, opt, x, zero=True)
    assert torch.equal(model.head.weight, head)  # (what the note says: it never updates)
    notes = [n for n in dbg.graph.notes if "but no optimizer stepped" in n]
    assert len(notes) == 1 and "head.weight" in notes[0] and "head.bias" in notes[0] and "SGD" in notes[0]
    assert "enc." not in notes[0]
    # the head's .grad adds up (opt.zero_grad() never reaches it): said by that note, not the accumulation one
    assert not any("accumulating" in n for n in dbg.graph.notes)
    dbg.close()
    assert dict(optimizer_hooks._global_optimizer_post_hooks) == hooks  # close() took its hook off


def test_no_optimizer_note_when_every_trained_parameter_is_optimized_or_none_stepped() -> None:
    model, x = encoder_and_head(), torch.randn(16, 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(3):
        train(model, opt, x, zero=True)
    assert dbg.graph.run.step == 3 and not any("no optimizer" in n for n in dbg.graph.notes)
    dbg.close()
    manual = encoder_and_head()  # a loop that updates by hand: no optimizer steps, nothing to say
    dbg = gs.debugger(manual)
    for _ in range(3):
        manual.zero_grad()
        manual(x).pow(2).mean().backward()
        with torch.no_grad():
            for p in manual.parameters():
                p -= 0.1 * p.grad  # type: ignore[operator]
    assert dbg.graph.run.step == 3 and not any("no optimizer" in n for n in dbg.graph.notes)
    dbg.close()
    # an optimizer for the encoder, the head updated another way gradsight cannot see (by hand here; a
    # torch.compile'd optimizer step runs no Python hook): it changes, so it is no parameter left out
    both = encoder_and_head()
    opt = torch.optim.SGD(both.enc.parameters(), lr=0.1)
    dbg = gs.debugger(both)
    for _ in range(3):
        train(both, opt, x, zero=True)
        with torch.no_grad():
            for p in both.head.parameters():
                p -= 0.1 * p.grad  # type: ignore[operator]
                p.grad = None
    assert dbg.graph.run.step == 3 and not any("no optimizer" in n for n in dbg.graph.notes)
    dbg.close()


# -- each leaf's .grad after the step -----------------------------------------------------------------


def test_leaf_grad_summaries_are_the_grad_after_the_step() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for zero in (True, False, True):  # None before, then a stale .grad from the step before, then zeroed
        train(model, opt, x, zero=zero)
        graph = dbg.graph
        for name, p in model.named_parameters():
            leaf = graph.node(f"leaf:{name}").leaf
            assert leaf is not None and leaf.grad is not None and p.grad is not None
            assert leaf.grad.shape == tuple(p.shape)
            assert leaf.grad.norm == pytest.approx(float(p.grad.norm()), rel=1e-6)
            assert leaf.grad.norm == pytest.approx(dbg.inspect(f"leaf:{name}").history[-1].grad_norm, rel=1e-9)
    dbg.close()


def test_a_leaf_autograd_grad_leaves_alone_keeps_its_grad_none() -> None:
    model, x = MLP(), torch.randn(4, 8)
    dbg = gs.debugger(model)
    torch.autograd.grad(model(x).sum(), list(model.parameters()))
    leaf = dbg.graph.node("leaf:layer1.weight").leaf
    assert dbg.graph.run.step == 1 and leaf is not None and leaf.grad is None
    dbg.close()


# -- what a live re-run computes ----------------------------------------------------------------------


def test_the_rerun_note_says_it_reuses_the_output_gradient_and_whether_parameters_changed() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    replay = dbg._live.last_call
    assert replay is not None and replay.step == 1
    now = dbg._target._now(replay)[0]
    assert changed_parameters(replay.parameters, now) == 0
    same = rerun_note(replay.step, replay.parameters, now)
    assert "output gradient step 1 recorded" in same and "dL/d output" in same
    assert "current parameters" in same and "changed" not in same
    opt.step()  # SGD writes every parameter in place
    now = dbg._target._now(replay)[0]
    assert changed_parameters(replay.parameters, now) == 4
    moved = rerun_note(replay.step, replay.parameters, now)
    assert "dL/d output" in moved and "all 4 parameters" in moved and "optimizer.step()" in moved
    assert "no real loss" in moved
    with torch.no_grad():
        model.layer2.bias.add_(1.0)  # one more write to one of them: still "changed", counted once
    assert changed_parameters(replay.parameters, dbg._target._now(replay)[0]) == 4
    dbg.close()


def test_the_rerun_note_counts_only_the_parameters_written() -> None:
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    then = ((id(a), a._version), (id(b), b._version))
    with torch.no_grad():
        a.add_(1.0)
    now = ((id(a), a._version), (id(b), b._version))
    assert changed_parameters(then, now) == 1
    assert "1 of 2 parameters" in rerun_note(7, then, now)
