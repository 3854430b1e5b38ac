"""Live mode and threads: ``close()`` while another thread trains leaves nothing of gradsight behind.

A training thread may be anywhere in gradsight's hooks when the kernel's thread closes the debugger.
Each test pins the thread at one point with events (a patched function that waits), closes, lets it
go on, and checks every place gradsight hooks into: global module hooks, the model's hooks, tensor
hooks on the parameters, each thread's torch-function mode stack, ``warnings.filters``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import gradsight as gs
from gradsight._capture import hooks, live_capture
from tests.run_zoo import MLP

WAIT = 10  # seconds: only reached when a test fails


pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def step(model: torch.nn.Module) -> None:
    model(torch.randn(4, 8)).pow(2).mean().backward()


def global_state() -> tuple[object, ...]:
    module = torch.nn.modules.module
    return (list(warnings.filters), dict(module._global_forward_pre_hooks), dict(module._global_forward_hooks))


def left_on(model: torch.nn.Module) -> dict[str, object]:
    """What hooks into ``model`` (gradsight's, as the tests add none of their own)."""
    left: dict[str, object] = {}
    for name, m in model.named_modules():
        if m._forward_hooks or m._forward_pre_hooks:
            left[f"module {name!r}"] = [*m._forward_pre_hooks.values(), *m._forward_hooks.values()]
    for name, p in model.named_parameters():
        if p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None):
            left[name] = p._backward_hooks
    return left


def modes() -> list[Any]:
    return list(torch.overrides._get_current_function_mode_stack())  # type: ignore[no-untyped-call]


class Worker(threading.Thread):
    """Runs ``work`` and keeps what it raised, and its mode stack after each step it reports."""

    def __init__(self, work: Callable[[Worker], None]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.stacks: list[list[Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work(self)
        except BaseException as e:
            self.error = e

    def note(self) -> None:
        self.stacks.append(modes())

    def finish(self) -> None:
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error


def pause_in(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, *, after: bool = False) -> tuple[Any, Any]:
    """Make ``owner.name`` wait (before or after it runs) on a thread other than the main one until
    ``go`` is set, after setting ``reached``."""
    reached, go = threading.Event(), threading.Event()
    real = getattr(owner, name)

    def waiting(*args: Any, **kwargs: Any) -> Any:
        mine = threading.current_thread() is not threading.main_thread() and not reached.is_set()
        if mine and not after:
            reached.set()
            assert go.wait(WAIT)
        result = real(*args, **kwargs)
        if mine and after:
            reached.set()
            assert go.wait(WAIT)
        return result

    monkeypatch.setattr(owner, name, waiting)
    return reached, go


def test_close_while_another_thread_is_inside_a_captured_forward() -> None:
    """The thread's source tracker is on its own mode stack, which close() cannot change: the end hook
    stays until that forward ends, takes the tracker off and removes itself (a thread that exited with
    the mode on its stack made torch 2.13 abort the process, about one run in four)."""
    inside, closed = threading.Event(), threading.Event()

    class Slow(MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not closed.is_set():
                inside.set()
                assert closed.wait(WAIT)
            return super().forward(x)

    model, before = Slow(), global_state()
    dbg = gs.debugger(model)

    def train(worker: Worker) -> None:
        for _ in range(3):
            step(model)
            worker.note()

    worker = Worker(train)
    worker.start()
    assert inside.wait(WAIT)
    dbg.close()
    closed.set()
    worker.finish()
    assert worker.stacks == [[], [], []]
    assert left_on(model) == {} and global_state() == before


def test_close_while_another_threads_captured_forward_raises() -> None:
    """torch runs always_call hooks after an exception while iterating the model's hook dict: the
    tracker comes off at once, the end hook removes itself at the model's next call."""
    inside, closed = threading.Event(), threading.Event()

    class Fails(MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not closed.is_set():
                inside.set()
                assert closed.wait(WAIT)
                raise ValueError("bad batch")
            return super().forward(x)

    model, before = Fails(), global_state()
    dbg = gs.debugger(model)

    def train(worker: Worker) -> None:
        with pytest.raises(ValueError, match="bad batch"):
            step(model)
        worker.note()
        step(model)
        worker.note()

    worker = Worker(train)
    worker.start()
    assert inside.wait(WAIT)
    dbg.close()
    closed.set()
    worker.finish()
    assert worker.stacks == [[], []]
    assert left_on(model) == {} and global_state() == before


def test_close_while_another_thread_starts_a_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread decided to capture its step, and close() runs before it started the module ranges
    and its source tracker: it must not start them after close()."""
    model, before = MLP(), global_state()
    dbg = gs.debugger(model)
    reached, go = pause_in(monkeypatch, live_capture, "rng_state")  # read just before a capture starts

    def train(worker: Worker) -> None:
        step(model)
        worker.note()
        step(model)
        worker.note()

    worker = Worker(train)
    worker.start()
    assert reached.wait(WAIT)
    dbg.close()
    go.set()
    worker.finish()
    assert worker.stacks == [[], []]
    assert left_on(model) == {} and global_state() == before
    assert dbg.graph.run.step == 0


def test_close_while_another_thread_installs_its_steps_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread's forward ended and it is hooking the step's graph when close() runs: the step's
    hooks (tensor hooks on the parameters too) must not stay."""
    model, before = MLP(), global_state()
    dbg = gs.debugger(model)
    reached, go = pause_in(monkeypatch, hooks.GradRecorder, "install", after=True)
    outputs: list[torch.Tensor] = []

    def forward(worker: Worker) -> None:
        outputs.append(model(torch.randn(4, 8)))  # its backward comes later, or never (an evaluation)
        worker.note()

    worker = Worker(forward)
    worker.start()
    assert reached.wait(WAIT)
    dbg.close()
    go.set()
    worker.finish()
    assert worker.stacks == [[]]
    assert left_on(model) == {} and global_state() == before
    outputs[0].sum().backward()
    assert dbg.graph.run.step == 0


def test_close_inside_the_models_own_forward_and_twice() -> None:
    """close() from the training thread itself, in the middle of a captured forward (a forward hook
    of a submodule), then again: no deadlock, nothing left, the forward and backward still work."""
    model, before, stack = MLP(), global_state(), modes()
    dbg = gs.debugger(model)
    closer = model.layer1.register_forward_hook(lambda *_: dbg.close())
    loss = model(torch.randn(4, 8)).pow(2).mean()
    closer.remove()
    dbg.close()
    loss.backward()
    assert modes() == stack and left_on(model) == {} and global_state() == before
    assert model.layer1.weight.grad is not None and dbg.graph.run.step == 0


def test_close_inside_a_backward_hook_and_from_the_view() -> None:
    """close() from a user's tensor hook while gradsight's hooks run in the same backward, and from
    the function that shows a step: no deadlock, nothing left."""
    model, before = MLP(), global_state()
    dbg = gs.debugger(model)
    closer = model.layer1.weight.register_hook(lambda _: dbg.close())
    step(model)
    closer.remove()
    assert left_on(model) == {} and global_state() == before and modes() == []

    dbg = gs.debugger(model)
    assert dbg._live is not None
    session, show = dbg._live, dbg._live._shelf._publish_fn

    def show_and_close(captured: Any) -> None:
        show(captured)
        session.close()

    session._shelf._publish_fn = show_and_close
    step(model)
    assert dbg.graph.run.step == 1 and left_on(model) == {} and global_state() == before
    dbg.close()


def test_a_training_thread_is_followed_while_the_kernel_re_runs_the_last_step() -> None:
    """A re-run of the last step pauses the session in its own thread only: the pause was one flag,
    and a training thread's steps meanwhile were neither counted nor captured."""
    in_rerun, trained = threading.Event(), threading.Event()

    class Waits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(8, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if threading.current_thread() is threading.main_thread() and in_rerun.is_set():
                assert trained.wait(WAIT)  # the re-run's forward: the worker trains meanwhile
            return self.lin(x)

    model = Waits()
    dbg = gs.debugger(model)
    step(model)
    dbg._live.flush()
    before = dbg._live.steps

    def train() -> None:
        for _ in range(5):
            step(model)
        trained.set()

    worker = threading.Thread(target=train)
    in_rerun.set()
    worker.start()
    dbg.rerun(requires_grad={"lin.bias": False})
    worker.join(WAIT)
    in_rerun.clear()
    assert dbg._live.steps - before == 5
    dbg.close()
