"""Live mode: follow the user's own training steps (``gradsight.debugger(model)`` with no inputs).

Forward hooks on the model mark each step: its pre-hook decides whether to capture this step (at
most one per ``interval`` seconds, so a fast loop pays almost nothing), its post-hook captures the
graph below the outputs and hooks its nodes. Whatever differentiates it — ``.backward()``,
``torch.autograd.grad``, ``backward(inputs=...)`` — the first hook that fires queues an
end-of-backward callback that finishes the step. Widget state is only touched from the thread that
made the debugger (the kernel's: the main thread under Jupyter and ``marimo edit``, a session's
thread under ``marimo run``): a step finished on another thread (an autograd worker's, for CUDA)
waits for the next forward or the end of the cell — IPython's ``post_run_cell`` event, or where
there is no IPython (marimo) a callback queued on the kernel's asyncio loop, which runs once the
cells of the current run are done, or at once while the loop idles (a thread trains).

The end of an IPython cell also lifts the rate limits, so each interactive cell's first step is
shown. The loop callback does not: the loop gets control whenever it idles (training on a thread:
``mo.Thread``) and at every ``await`` of an async training loop, not only at the end of a cell. So
without IPython the limits are lifted only for a step that looks like a new run a person started:
the loop got control after the model's last activity, and the model then stayed idle for at least
``max(IDLE_FLOOR, IDLE_STEPS × the last captured step's time)`` (a loop starts its next step at
once; a person re-running a cell does not). :meth:`LiveSession.close` removes every hook.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch

from .._inert import inert, restore
from ..config import options
from ..graph import RunInfo
from ..inspection import GradStep
from .cell_end import LoopCallback, on_post_run_cell
from .finish import build_with_gradients
from .guard import own_run, rng_state
from .hooks import GradRecorder
from .modules import ModuleTracker, compiling
from .names import leaf_names_from_params, module_names
from .outputs import flatten_tensors
from .records import Captured, CaptureOptions, Collected
from .source import SourceTracker
from .store import TensorStore
from .summary import norm_of
from .walk import ACCUMULATE_GRAD, collect, gc_paused

HISTORY = 50  # steps of .grad history kept per leaf

# Without IPython, what makes a step "a new run" that gets the rate limits lifted (see the module's
# docstring): the model idle for at least IDLE_FLOOR seconds and at least IDLE_STEPS times the last
# captured step's time (its forward plus its backward, gradsight's work included: about twice a plain
# step's). A person re-running a cell takes longer than 0.2 s to see the output and click or type. A
# training loop's work from one forward's end to the next forward (backward, optimizer step, next
# batch) takes well under 0.2 s for fast steps and rarely reaches ~4 plain steps for slow ones; a loop that
# does idle that long (awaiting, or on a thread) is captured at most 1 / IDLE_FLOOR times a second and
# slowed at most ~1.2× (a captured step costs ~one plain step more, on top of >= 5 steps' time).
IDLE_FLOOR = 0.2
IDLE_STEPS = 2.0


class LiveSession:
    """Observes ``model``'s forward/backward calls and hands finished steps to ``publish``."""

    def __init__(self, model: torch.nn.Module, publish: Callable[[Captured], None], *, budget: int,
                 interval: float, source_lines: bool, share: float = 1.0,
                 report: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self._publish_fn = publish
        self._report_fn = report  # shows an error in the view (owner thread)
        self._reported = 0  # errors shown so far
        self._budget = budget
        self._interval = interval
        self._source_lines = source_lines
        self._leaf_names = leaf_names_from_params(model)
        self._tracker = ModuleTracker(module_names(model), start=False)  # started for captured steps
        self._handles = [
            model.register_forward_pre_hook(_ModelHook(self._on_forward_start), with_kwargs=True),
            model.register_forward_hook(_ModelHook(self._on_forward_end), always_call=True),
        ]
        self.last_call: tuple[Any, Any, Any, Any] | None = None  # (args, kwargs, rng, output grads) to re-run
        self._call: tuple[Any, Any, Any] | None = None
        self._paused = False
        self._lock = threading.Lock()
        self._capturing = False
        self._sources: SourceTracker | None = None
        self._forward_thread: int | None = None  # the thread whose forward is being captured
        self._step: _Step | None = None  # captured, waiting for its backward
        self._ready: Captured | None = None  # finished, waiting for the owner thread
        self._last_capture = -float("inf")
        self._share = min(max(share, 1e-3), 1.0)
        self._next_allowed = -float("inf")  # after a captured step, wait so captures stay a small share
        self.steps = 0  # forward calls seen with gradients enabled
        self.history: dict[str, list[GradStep]] = {}
        self.errors: list[str] = []
        self._closed = False
        self._forward_started = 0.0
        # (under _lock) when the model last ran (a forward's start or end, a captured backward's end),
        # whether the kernel's asyncio loop got control since, and the last captured step's time
        self._last_active = -float("inf")
        self._loop_turned = False
        self._step_time = 0.0
        self._owner = threading.get_ident()  # the kernel's thread: the only one that touches the widget
        self._ipython_flush = on_post_run_cell(self.cell_done)
        self._end_of_run = None if self._ipython_flush is not None else LoopCallback.on_running_loop(self._loop_turn)

    # -- forward -------------------------------------------------------------------------------

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Ignore the model's forward calls (a re-run of the last step is not a new step)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _on_forward_start(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        if self._paused or own_run():  # a forward gradsight runs (a runnable debugger's) is no user step
            return
        here = threading.get_ident()
        _drop_stopped_trackers()
        if self._forward_thread == here:
            self._end_forward()  # one whose end hook never ran: a KeyboardInterrupt skips always_call hooks
        elif self._forward_thread is not None and not _alive(self._forward_thread):
            self._sources = None  # its thread ended inside a captured forward: its mode stack is gone too
            self._end_forward()
        elif self._forward_thread is not None:  # another thread's forward is being captured
            if torch.is_grad_enabled():
                self.steps += 1  # a step all the same (not captured: one capture at a time)
                self._new_run(time.monotonic())  # (model activity all the same)
            return
        self.flush()
        if not torch.is_grad_enabled():  # an evaluation under no_grad: not a step, nothing to capture
            return
        self.steps += 1
        now = time.monotonic()
        self._forward_started = now
        if self._new_run(now):  # a person ran it (no IPython: no post_run_cell): show it, like a new cell's
            self._last_capture = self._next_allowed = -float("inf")
        due = now - self._last_capture >= self._interval and now >= self._next_allowed
        self._capturing = due
        if self._capturing:
            self._forward_thread = threading.get_ident()
            self._call = (args, kwargs, rng_state())
            self._tracker.reset()
            self._tracker.start()
            if self._source_lines:
                self._sources = SourceTracker()
                self._sources.__enter__()

    def _new_run(self, now: float) -> bool:
        """A step begins: does it look like a new run a person started, not a loop's next step? Only
        where there is no IPython: the kernel's asyncio loop got control after the model's last
        activity (``_loop_turn``), and the model has been idle since for long enough (see IDLE_FLOOR).
        Under IPython (no loop callback) post_run_cell decides, and a step costs no lock here."""
        if self._end_of_run is None:
            return False
        with self._lock:
            new = self._loop_turned and now - self._last_active >= max(IDLE_FLOOR, IDLE_STEPS * self._step_time)
            self._loop_turned = False
            self._last_active = now
        return new

    def _ran(self, now: float, *, step_time: float | None = None, publish: bool = False) -> None:
        """The model was active until ``now`` (any thread): the loop must get control again before a
        step counts as a new run, so queue the loop callback (``publish``: a step is ready, at once)."""
        with self._lock:
            self._loop_turned = False
            self._last_active = max(self._last_active, now)
            if step_time is not None:
                self._step_time = step_time
        end_of_run = self._end_of_run  # (close() on the owner thread may clear it meanwhile)
        if end_of_run is not None:
            end_of_run.queue(at_once=publish)

    def _on_forward_end(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if self._end_of_run is not None and torch.is_grad_enabled() and not self._paused and not own_run():
            try:
                self._ran(time.monotonic())
            except Exception as e:  # never break the user's forward
                self._error(e)
        if self._forward_thread != threading.get_ident():  # no capture began in this thread's forward
            _drop_stopped_trackers()  # closed from another thread meanwhile: take its tracker off here
            return
        if not self._end_forward():
            return
        try:
            self._start_step(output)
        except Exception as e:  # never break the user's forward
            self._error(e)

    def _end_forward(self) -> bool:
        """Stop the captured forward's source tracker and module ranges; was one being captured?
        The tracker is on the capturing thread's mode stack: from another thread (``close()``) it is
        only switched off, and that thread's end hook takes it off."""
        sources, self._sources = self._sources, None
        if sources is not None:
            if self._forward_thread in (None, threading.get_ident()):
                _remove_mode(sources)
            else:
                sources.stopped = True
        self._tracker.stop()
        self._forward_thread = None
        capturing, self._capturing = self._capturing, False
        return capturing

    def _start_step(self, output: Any) -> None:
        outputs = [t for t in flatten_tensors(output) if t.grad_fn is not None]
        roots = [t.grad_fn for t in outputs]
        if not roots:
            return
        self._last_capture = time.monotonic()  # the forward started before: _step_start below

        if self._step is not None:
            self._step.abandon()  # its backward never came: drop its hooks
        store = TensorStore(self._budget, eager=False)  # live steps: statistics only on click
        sources = self._sources
        opts = CaptureOptions(leaf_names=self._leaf_names, store=store, module_of=self._tracker.module_of,
                              source_of=None if sources is None else sources.source_of)  # fmt: skip
        with gc_paused():
            collected, order = collect(list(dict.fromkeys(roots)), opts)
        keep: Collection[int] = range(len(collected.names))
        if store.kept_bytes + collected.gradient_bytes() > options.keep_all_below:
            keep = ()  # big graph: shapes and norms only (see config.Options.keep_all_below)
            store.keep_only(set())
        root_index = dict(zip(dict.fromkeys(roots), collected.roots, strict=True))
        step = _Step(self.steps, collected, store, self._finish, {*keep, *collected.roots})
        step.started = self._forward_started
        step.forward_time = self._last_capture - self._forward_started
        step.call = self._call
        step.outputs = [(root_index[t.grad_fn], t.output_nr) for t in outputs]
        step.recorder.install(order, collected.names)
        step.leaves = [(i, order[i].variable) for i, name in enumerate(collected.names) if name == ACCUMULATE_GRAD]
        del order
        self._step = step

    # -- backward ------------------------------------------------------------------------------

    def _finish(self, step: _Step) -> None:
        """End of the step's backward (any thread): build the graph, record .grad history."""
        try:
            now = time.monotonic()
            self._next_allowed = now + (now - step.started) * (1 / self._share - 1)
            step.recorder.close()
            with gc_paused():
                run = RunInfo(mode="live", step=step.number)
                graph = build_with_gradients(step.collected, step.recorder, step.store, run)
            try:  # the history and the re-run's call are extras: a failure there still shows the step
                self._record_history(step, graph)
                self._record_call(step)
            except Exception as e:
                self._error(e)
                graph = replace(graph, run=replace(graph.run, errors=(*graph.run.errors, self.errors[-1])))
            with self._lock:
                if self._step is step:
                    self._step = None
                self._ready = Captured.of(graph, step.collected, step.store)
            if threading.get_ident() == self._owner:
                self.flush()
            end = time.monotonic()  # no post_run_cell event: publish on the loop, at once
            self._ran(end, step_time=step.forward_time + end - step.backward_started, publish=True)
        except Exception as e:
            self._error(e)

    def _record_call(self, step: _Step) -> None:
        """Remember the step's inputs, RNG state and output gradients: what a re-run replays."""
        if step.call is None:
            return
        grads = [step.store.get((i, f"grad-in:{nr}")) for i, nr in step.outputs]
        args, kwargs, rng = step.call
        self.last_call = (args, kwargs, rng, None if any(g is None for g in grads) else grads)

    def _record_history(self, step: _Step, graph: Any) -> None:
        ids = step.collected.ids
        for i, leaf in step.leaves:
            name = self._leaf_names.get(leaf)
            if name is None:
                continue
            grad = leaf.grad
            norm = None if grad is None else norm_of(grad)  # sparse (embeddings), complex: norm_of copes
            steps = self.history.setdefault(name, [])
            received = graph.node(ids[i]).grad_norm if ids[i] in graph else None
            steps.append(GradStep(step=step.number, grad_norm=norm, received_norm=received))
            del steps[:-HISTORY]

    # -- publishing (the owner thread only) ------------------------------------------------------

    def cell_done(self) -> None:
        """End of a notebook cell (IPython's ``post_run_cell``): publish what is ready, and let the
        next cell's first step be captured whatever the rate limits say (one step per cell is
        interactive use, not a loop)."""
        self.flush()
        self._last_capture = self._next_allowed = -float("inf")

    def _loop_turn(self) -> None:
        """The kernel's asyncio loop got control (no IPython): publish what is ready. Not the end of
        a cell — the loop also gets control while a thread trains and at each ``await`` of an async
        loop — so the limits are left alone; the next step's ``_new_run`` decides."""
        with self._lock:
            self._loop_turned = True
        self.flush()

    def flush(self) -> None:
        if threading.get_ident() != self._owner:
            return
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None and not self._closed:
            self._publish_fn(ready)
        if self._report_fn is not None and len(self.errors) > self._reported and not self._closed:
            self._reported = len(self.errors)
            self._report_fn(f"gradsight could not record a live step: {self.errors[-1]}")

    def close(self) -> None:
        self._closed = True
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._end_forward()
        self._tracker.close()
        if self._step is not None:
            self._step.abandon()
            self._step = None
        self._ready = None
        if self._ipython_flush is not None:
            self._ipython_flush()
            self._ipython_flush = None
        self._end_of_run = None

    def _error(self, e: BaseException) -> None:
        if len(self.errors) < 20:  # the first line: torch's dispatcher errors run to kilobytes
            self.errors.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300])


def _remove_mode(mode: Any) -> None:
    """Take ``mode`` off this thread's torch-function mode stack, wherever it is. Two sessions on one
    model enter their trackers in one order and leave them in the same order (torch runs forward
    hooks in registration order), and a mode the user pushed meanwhile must stay."""
    stack = torch.overrides._get_current_function_mode_stack()  # type: ignore[no-untyped-call]
    if not any(m is mode for m in stack):
        return
    above = []
    while (top := torch._C._pop_torch_function_stack()) is not mode:
        above.append(top)
    for m in reversed(above):
        torch._C._push_on_torch_function_stack(m)


def _alive(thread_id: int) -> bool:
    return any(t.ident == thread_id and t.is_alive() for t in threading.enumerate())


def _drop_stopped_trackers() -> None:
    for mode in torch.overrides._get_current_function_mode_stack():  # type: ignore[no-untyped-call]
        if isinstance(mode, SourceTracker) and mode.stopped:
            _remove_mode(mode)


class _ModelHook:
    """A hook on the user's model. A copy or a pickle of the model gets an inert one instead
    (see gradsight._inert): copies are not followed, and the session is never copied along."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if compiling():  # traced by dynamo (the model runs inside a torch.compile'd wrapper): stay out
            return None  # of its graph — tracing gradsight's capture code recompiled it again and again
        return self.fn(*args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Callable[..., None]:
        return inert

    def __reduce__(self) -> tuple[Callable[[], Any], tuple[()]]:
        return restore, ()


class _Step:
    def __init__(self, number: int, collected: Collected, store: TensorStore,
                 finish: Callable[[_Step], None], keep: Collection[int]) -> None:  # fmt: skip
        self.number = number
        self.collected = collected
        self.store = store
        self.recorder = GradRecorder(store, keep, on_first=self._queue_finish)
        self.leaves: list[tuple[int, torch.Tensor]] = []
        self.started = 0.0  # when its forward began (time.monotonic)
        self.forward_time = 0.0  # its forward's duration
        self.backward_started = 0.0  # when its backward's first hook ran (a later cell may run it)
        self.call: tuple[Any, Any, Any] | None = None  # (args, kwargs, rng state) of its forward
        self.outputs: list[tuple[int, int]] = []  # (root node index, output_nr) per output tensor
        self._finish = finish

    def _queue_finish(self) -> None:
        # Runs inside the first hook of this step's backward; the callback runs when it ends.
        self.backward_started = time.monotonic()
        torch.autograd.Variable._execution_engine.queue_callback(lambda: self._finish(self))

    def abandon(self) -> None:
        self.recorder.close()
        self.store.release()
