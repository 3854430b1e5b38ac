"""Live mode: which steps are shown as failed. A backward that raised above the model's output (in the
loss) fails its step and takes its hooks off; one still running on a worker thread, or one that
finished there, is no failure; a failure on one thread reaches the view although another thread's
step ends after it; without the exception (marimo) the error says where to look."""

from __future__ import annotations

import sys
import threading
import types
from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight._capture.live_notes import describe
from tests.run_zoo import MLP

WAIT = 10  # seconds: only reached when a test fails


pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def hook_dicts(model: torch.nn.Module) -> list[Any]:
    """Every hook dict gradsight may touch on ``model`` (copies: compared before and after)."""
    dicts: list[Any] = []
    for m in model.modules():
        dicts += [dict(m._forward_pre_hooks), dict(m._forward_hooks)]
    for p in model.parameters():
        dicts.append(None if p._backward_hooks is None else dict(p._backward_hooks))
    return dicts


LOSS = """
class Broken(torch.autograd.Function):
    "The user's loss piece whose backward raises: no node of the model's graph runs."
    @staticmethod
    def forward(ctx, t):
        return t.clone()
    @staticmethod
    def backward(ctx, g):
        raise ValueError("the loss's backward broke")
"""


def test_a_backward_that_raises_in_the_loss_fails_the_step_and_takes_its_hooks_off(shell: InteractiveShell) -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    before = hook_dicts(model)
    shell.user_ns.update(model=model, x=x)
    shell.run_cell(LOSS + "dbg = __import__('gradsight').debugger(model)")
    dbg = shell.user_ns["dbg"]
    result = shell.run_cell("loss = Broken.apply(model(x)).sum()\nloss.backward()")
    assert type(result.error_in_exec) is ValueError  # the user's exception, unchanged
    graph = dbg.graph
    assert graph.run.step == 1 and dbg.status == "error"
    assert "step 1 raised ValueError: the loss's backward broke" in dbg.error
    assert any("above the model's output" in n and "the loss's backward broke" in n for n in graph.notes)
    assert not any(node.executed for node in graph.nodes)  # it never reached the model
    assert model.layer1.weight.grad is None
    assert dbg._live._ends.step is None  # its hooks are off, not waiting for the next capture
    with_dbg = hook_dicts(model)
    assert with_dbg[2:] == before[2:]  # the parameters' hook dicts are as before (the model's own keep the live hooks)
    # a backward that raises in another graph, not over the step, fails nothing
    shell.run_cell("out = model(x)")
    shell.run_cell("Broken.apply(torch.ones(2, requires_grad=True)).sum().backward()")
    assert dbg.graph.run.step == 1 and dbg._live._ends.step is not None
    shell.run_cell("out.sum().backward()")  # the step's own backward, finished: it replaces the failure
    assert dbg.graph.run.step == 2 and dbg.error == "" and dbg.status == "ready"
    dbg.close()
    assert hook_dicts(model) == before


@pytest.mark.parametrize(
    ("call", "message"),
    [("loss.backward()", "grad can be implicitly created only for scalar outputs"),
     ("loss.backward(torch.ones(5))", "Mismatch in shape"),
     ("torch.autograd.grad(loss, [model.layer1.weight])", "grad can be implicitly created only for scalar outputs")],
)  # fmt: skip
def test_a_backward_call_with_bad_arguments_fails_the_step_and_takes_its_hooks_off(
    shell: InteractiveShell, call: str, message: str
) -> None:
    """torch checks a backward call's arguments before the engine starts: the step is shown failed
    with the user's error, says its backward never began, and its hooks come off at the cell's end."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    before = hook_dicts(model)
    shell.user_ns.update(model=model, x=x)
    shell.run_cell("dbg = __import__('gradsight').debugger(model)\nmodel(x).sum().backward()")
    dbg = shell.user_ns["dbg"]
    assert dbg.graph.run.step == 1 and dbg.status == "ready"
    result = shell.run_cell(f"loss = model(x).pow(2)\n{call}")
    assert type(result.error_in_exec) is RuntimeError and message in str(result.error_in_exec)
    graph = dbg.graph
    assert graph.run.step == 2 and dbg.status == "error"
    assert "step 2 raised RuntimeError" in dbg.error and message in dbg.error
    assert any("before the backward began" in n and message in n for n in graph.notes), graph.notes
    assert not any(node.executed for node in graph.nodes)
    assert dbg._live._ends.step is None and hook_dicts(model)[2:] == before[2:]  # its hooks are off
    shell.run_cell("model(x).sum().backward()")  # a step that finishes replaces the failure
    assert dbg.graph.run.step == 3 and dbg.status == "ready" and dbg.error == ""
    dbg.close()
    assert hook_dicts(model) == before


def hold_backward(model: MLP) -> tuple[threading.Event, threading.Event, Any]:
    """A hook of the user's that keeps a worker thread's backward running (inside it) until ``go``."""
    inside, go = threading.Event(), threading.Event()

    def wait(_: torch.Tensor) -> None:
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            go.wait(WAIT)

    return inside, go, model.layer1.weight.register_hook(wait)


@pytest.mark.parametrize("meanwhile", ["the model's next call", "the cell's end"])
def test_a_backward_still_running_on_a_worker_thread_is_no_failure(meanwhile: str) -> None:
    """The user's main thread starts the backward on a worker thread and, before joining it, calls the
    model again or ends the cell: the pass is running, not raised, and shows as a finished step."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    assert dbg._live is not None
    inside, go, handle = hold_backward(model)
    loss = model(x).pow(2).mean()
    worker = threading.Thread(target=loss.backward)
    worker.start()
    assert inside.wait(WAIT)
    if meanwhile == "the cell's end":
        dbg._live.cell_done()
    else:
        model(x)  # the next step's forward (captured): the first step's pass has not ended
    go.set()
    worker.join(WAIT)
    handle.remove()
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 1 and dbg.error == "" and dbg.status == "ready"
    assert not any("raised" in n or "stopped before it ended" in n for n in graph.notes), graph.notes
    assert graph.node("leaf:layer1.weight").executed is True
    assert model.layer1.weight.grad is not None
    assert graph.node("leaf:layer1.weight").grad_norm == pytest.approx(float(model.layer1.weight.grad.norm()))
    dbg.close()
    assert not any(hook_dicts(model))  # (the user's hook left layer1.weight an empty dict)


def test_a_finished_backward_on_a_worker_thread_is_a_normal_step() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    assert dbg._live is not None
    for number in (1, 2):
        loss = model(x).sum()
        worker = threading.Thread(target=lambda: loss.backward())  # noqa: B023 (joined at once)
        worker.start()
        worker.join(WAIT)
        dbg._live.cell_done()
        assert dbg.graph.run.step == number and dbg.error == "" and dbg.status == "ready"
        assert not any("raised" in n or "stopped before" in n for n in dbg.graph.notes)
    dbg.close()


def test_a_failure_on_one_thread_reaches_the_view_when_another_threads_step_ends_after_it() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    assert dbg._live is not None

    def boom(_: torch.Tensor) -> None:
        if threading.current_thread().name == "A":  # (not its ident: B's may be A's, reused)
            raise ValueError("thread A's backward broke")

    handle = model.layer1.weight.register_hook(boom)
    caught: list[BaseException] = []

    def thread_a() -> None:
        try:
            model(x).sum().backward()
        except ValueError as e:
            caught.append(e)

    def thread_b() -> None:
        model(x).sum().backward()  # its step begins after A's ended (A's shows failed) and ends before the flush

    for name, target in (("A", thread_a), ("B", thread_b)):
        worker = threading.Thread(target=target, name=name)
        worker.start()
        worker.join(WAIT)
    handle.remove()
    assert len(caught) == 1 and dbg.graph.run.step == 0  # only the debugger's thread shows steps
    dbg._live.cell_done()
    assert dbg.graph.run.step == 1 and dbg.status == "error" and "live step 1 raised" in dbg.error
    # the next finished step of the failed step's own thread (here: the kernel's) replaces it
    model(x).sum().backward()
    assert dbg.graph.run.step == 3 and dbg.status == "ready" and dbg.error == ""
    dbg.close()


def test_a_failure_without_the_exception_under_marimo_says_where_to_look(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = describe(None)
    assert "your code caught it" in plain
    marimo = types.ModuleType("marimo")
    marimo.running_in_notebook = lambda: True  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "marimo", marimo)
    text = describe(None)
    assert "marimo keeps no traceback" in text and "your code" not in text
    assert describe(ValueError("seen")) == "ValueError: seen"  # the exception itself when it is known
