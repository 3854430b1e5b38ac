"""Live mode: follow the user's own training steps (``gradsight.debugger(model)`` with no inputs).

Forward hooks on the model mark each step: its pre-hook decides whether to capture this step (at
most one per ``interval`` seconds, so a fast loop pays almost nothing), its post-hook captures the
graph below the outputs and hooks its nodes. Whatever differentiates it — ``.backward()``,
``torch.autograd.grad``, ``backward(inputs=...)`` — the first hook of each backward pass queues an
end-of-pass callback. The passes of a step all belong to it (a gradient penalty's
``autograd.grad(..., create_graph=True)`` and its ``loss.backward()``, several losses with
``retain_graph=True``): a pass that frees the graph is the step's last, and publishes it at once; one
that keeps the graph leaves the step open for more, until the cell ends or the next capture
(:meth:`.Ends.cell_ended`); once its thread calls the model again, only passes that run its
graph still count (:meth:`LiveStep.recall`). Widget state is only touched from the thread that
made the debugger (the kernel's: the main thread under Jupyter and ``marimo edit``, a session's
thread under ``marimo run``): a step finished on another thread (an autograd worker's, for CUDA)
waits for the next forward or the end of the cell — IPython's ``post_run_cell`` event, or where
there is no IPython (marimo) a callback queued on the kernel's asyncio loop, which runs once the
cells of the current run are done, or at once while the loop idles (a thread trains).

When a step is captured (the rate limits, and the end of a cell or a new run lifting them) is
:mod:`.live_pace`'s. :meth:`LiveSession.close` removes every hook (see there for forwards still
running on other threads). A step whose backward raised is shown with the error once its thread
goes on (:mod:`.live_ends`); what its graph says beyond gradients is
:mod:`.live_notes`'s.

Step numbers count training steps — backward passes, each numbered as it first reaches a forward of
the model (:mod:`.live_mark`) — not calls: a siamese step's two calls are one step, a DQN target call
or a validation forward left with gradients on (no backward reaches it) none, each micro-batch's
backward of gradient accumulation one, a WGAN-GP critic iteration (its penalty's ``create_graph``
pass, then ``loss.backward()``) one. :meth:`LiveSession.close` also removes the marks that number
uncaptured steps.

A call of the model inside its own forward is part of the outer call's step; one inside a backward
pass (``checkpoint(model, x)`` recomputing its forward) is no step. What a captured forward records
(names, module ranges, what a re-run replays) is :mod:`.live_capture`'s.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from .cell_end import LoopCallback, on_post_run_cell
from .followed import ModelHook
from .guard import own_run
from .live_capture import Forward
from .live_ends import Ends
from .live_history import GradHistories
from .live_mark import Marks, Numbers
from .live_optimizers import Optimizers
from .live_pace import Pace
from .live_shelf import Shelf
from .live_step import LiveStep, Replay
from .outputs import flatten_tensors
from .records import Captured
from .threads import Calls, alive, drop_stopped_trackers, in_except, on_stack, remove_mode

_graph_task_id = torch._C._current_graph_task_id  # -1 outside a backward pass on this thread

REENTRANT_MODEL = (
    "the model ran under no_grad, then again inside a backward pass: checkpoint(model, ..., use_reentrant=True) "
    "runs it so, and live mode records no step inside a backward pass; pass use_reentrant=False (PyTorch's "
    "recommendation) to see the steps"
)


class LiveSession:
    """Observes ``model``'s forward/backward calls and hands finished steps to ``publish``."""

    def __init__(self, model: torch.nn.Module, publish: Callable[[Captured], None], *, budget: int,
                 interval: float, source_lines: bool, share: float = 1.0,
                 report: Callable[[str], None] | None = None,
                 failed: Callable[[str | None], None] | None = None) -> None:  # fmt: skip
        self._shelf = Shelf(publish, report, failed)  # the step waiting for the owner thread
        self._budget = budget
        self._source_lines = source_lines
        self._model = weakref.ref(model)  # its names and modules are read at each captured step
        start = model.register_forward_pre_hook(ModelHook(self._on_forward_start), with_kwargs=True)
        end = model.register_forward_hook(ModelHook(self._on_forward_end), always_call=True)
        self._handles = [start, end]
        self._end_hook: RemovableHandle | None = end  # kept by close() while another thread's forward runs
        self.last_call: Replay | None = None  # what a re-run of the last step replays
        self._calls = Calls()  # per thread: paused (gradsight re-runs the last step), the outermost model call
        # Guards what close() on another thread may meet half done: a capture's start and end (not
        # uncaptured steps), the pending step, the loop-turn state. Never held around the user's code.
        self._lock = threading.Lock()
        self._forward: Forward | None = None  # (under _lock) the forward being captured
        self._linger: int | None = None  # after close(): the thread whose tracker the end hook takes off
        self._numbers = Numbers()  # training steps: backward passes, numbered as they reach the model
        self._marks = Marks(self._numbers)  # the hooks that number the steps not captured
        self.history = GradHistories()  # name -> its leaf's .grad steps (restarted when replaced)
        self.errors: list[str] = []
        self._closed = False
        self._no_grad_call = False  # the model's last call (outside a backward) ran under no_grad
        self._told_recompute = False
        self._owner = threading.get_ident()  # the kernel's thread: the only one that touches the widget
        self._ipython_flush = on_post_run_cell(self.cell_done)
        self._ends = Ends(self._lock, self._retire, self._error, shell=self._ipython_flush is not None)
        end_of_run = None if self._ipython_flush is not None else LoopCallback.on_running_loop(self._loop_turn)
        self._pace = Pace(interval, share, end_of_run)
        self._optimizers = Optimizers()  # those that step: a parameter in none of them never trains

    # -- forward -------------------------------------------------------------------------------

    @property
    def steps(self) -> int:
        """The training steps seen: the last step number given (:class:`.live_mark.Numbers`)."""
        return self._numbers.steps

    def paused(self) -> AbstractContextManager[None]:
        """Ignore the model's forward calls in this thread (a re-run of the last step is not a new
        step); a training thread's steps meanwhile still count and are captured."""
        return self._calls.paused()

    def _on_forward_start(self, module: torch.nn.Module, args: Any, kwargs: Any) -> None:
        if self._calls.on or own_run():  # a forward gradsight runs (a runnable debugger's) is no user step
            return
        if _graph_task_id() != -1:  # inside a backward pass: a checkpoint's recompute of the step's forward
            self._recomputed()
            return
        if self._calls.enter():  # the model's forward calls the model (test-time augmentation, recursion)
            return
        here = threading.get_ident()
        drop_stopped_trackers()
        if torch.is_grad_enabled():  # another forward: passes that reach only leaves are its, not the step's
            self._ends.recalled(here)
            self._numbers.called()  # (and a create_graph pass now is a new step)
        self._ends.called(here)
        forward = self._forward
        current = forward.thread if forward is not None else None
        if current == here:
            self._end_forward()  # one whose end hook never ran: a KeyboardInterrupt skips always_call hooks
        elif current is not None and not alive(current):
            self._end_forward(pop=False)  # its thread ended inside a captured forward: its mode stack is gone too
        elif current is not None:  # another thread's forward is being captured
            if torch.is_grad_enabled():
                self._pace.new_run(time.monotonic())  # (model activity all the same)
            return
        self.flush()
        self._no_grad_call = not torch.is_grad_enabled()
        if self._no_grad_call:  # an evaluation under no_grad: not a step, nothing to capture
            return
        now = time.monotonic()
        if self._pace.new_run(now):  # a person ran it (no IPython: no post_run_cell): show it, like a new cell's
            self._pace.lift()
        if self._pace.due(now):
            self._begin_capture(here, now, args, kwargs)

    def _recomputed(self) -> None:
        """The model runs inside a backward pass. After a call under no_grad, with gradients on: the
        recompute of a reentrant ``checkpoint(model, ...)``, whose forward ran under no_grad, so no
        step of it is ever shown: say so once."""
        if self._no_grad_call and torch.is_grad_enabled() and not self._told_recompute:
            self._told_recompute = True
            if len(self.errors) < 20:  # (as _error keeps them) shown in the view by flush()
                self.errors.append(REENTRANT_MODEL)

    def _begin_capture(self, here: int, now: float, args: Any, kwargs: Any) -> None:
        model = self._model()
        if model is None:
            return
        forward = Forward.of(model, here, now, args, kwargs, sys._getframe())
        with self._lock:  # close() on another thread finds all of a capture's start or none of it
            if self._closed or self._forward is not None:
                return
            self._forward = forward
            forward.start(self._source_lines)

    def _on_forward_end(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        try:
            if _graph_task_id() != -1:  # a checkpoint's recompute inside a backward pass: no step began
                return
            if not self._calls.ended():
                return  # a call inside the model's own forward: the outer call's end ends the step
            self._forward_ended(output)
        except Exception as e:  # never break the user's forward
            self._error(e)
        finally:
            if self._closed:
                self._let_go()

    def _forward_ended(self, output: Any) -> None:
        if self._pace.end_of_run is not None and torch.is_grad_enabled() and not self._calls.on and not own_run():
            try:
                self._pace.ran(time.monotonic())
            except Exception as e:  # the capture still ends below
                self._error(e)
        forward = self._forward
        if forward is None or forward.thread != threading.get_ident():  # no capture began in this thread's forward
            drop_stopped_trackers()  # closed from another thread meanwhile: take its tracker off here
            if torch.is_grad_enabled() and not self._calls.on and not own_run():
                self._marks.mark(output)  # not captured: numbered when a backward reaches it
            return
        ended = self._end_forward()
        if ended is not None:
            try:
                self._start_step(output, ended)
            except Exception:  # (said by the end hook) its backward is a step all the same
                self._marks.mark(output)
                raise

    def _end_forward(self, *, pop: bool = True) -> Forward | None:
        """End the capture of this thread's forward (None: close() ended it): stop its module ranges
        and take its source tracker off this thread's mode stack (``pop=False``: its thread is gone)."""
        with self._lock:
            forward, self._forward = self._forward, None
        if forward is None:
            return None
        if forward.sources is not None and pop:
            remove_mode(forward.sources)
        forward.tracker.stop()
        return forward

    def _start_step(self, output: Any, forward: Forward) -> None:
        outputs = [t for t in flatten_tensors(output) if t.grad_fn is not None]
        if not outputs:
            return
        ended = self._pace.last_capture = time.monotonic()  # the forward started before: _step_start below

        self._ends.supersede(threading.get_ident())
        step: LiveStep | None = None
        try:  # a KeyboardInterrupt before the session holds the step: its hooks come off (close() never sees it)
            step = forward.step(self._numbers.count, outputs, model=self._model(), budget=self._budget,
                                pass_ended=self._pass_ended, ended=ended, optimizers=self._optimizers)  # fmt: skip
            with self._lock:  # close() on another thread meanwhile saw no step: this one is dropped here
                dropped, self._ends.step = (step, None) if self._closed else (self._ends.step, step)
        except BaseException:
            if step is not None and self._ends.step is not step:
                step.abandon()
            raise
        if dropped is not None:
            self._retire(dropped)

    # -- backward ------------------------------------------------------------------------------

    def _pass_ended(self, step: LiveStep, last: bool) -> None:
        """End of a backward pass over the step's graph (any thread): its records join the earlier
        passes' (the recorder stays open), and the leaves' ``.grad`` is read (an optimizer's
        ``zero_grad()`` may clear it before the step is published). A pass that ran the graph and
        freed it (``last``) is the step's last: the step is published now. After one that kept it
        the step stays open for more (:meth:`Ends.cell_ended`)."""
        if step.closed:  # (read again under the lock in _retire)
            return
        try:  # two calls of the model in one pass (a siamese step): one step, the current one's
            joined = self._ends.joined(step)
            for earlier in joined:
                self._drop(earlier)
            if step in joined:
                return
        except Exception as e:
            self._error(e)
        try:
            now = time.monotonic()
            self._pace.pass_ended(now, step.started)
            step.passes += 1
            step.read_grads()
        except Exception as e:  # the step still shows, and says so
            step.errors.append(self._error(e))
        try:
            for stale in self._ends.stale(step) if last else []:
                self._drop(stale)
            if last or self._ends.set_aside(step):  # (a step set aside has its last pass: a new one is captured)
                self._retire(step)
                if threading.get_ident() == self._owner:
                    self.flush()
            end = time.monotonic()  # no post_run_cell event: publish on the loop, at once
            step.backward_time += end - step.pass_started
            self._pace.ran(end, step_time=step.forward_time + step.backward_time, publish=last)
        except Exception as e:
            self._error(e)

    def _retire(self, step: LiveStep, failed: bool = False) -> None:
        """No more passes of ``step`` are recorded: its hooks go, and the graph of all its passes is
        built and published with the ``.grad`` history (no pass ended and none raised, or the session
        closed: dropped). ``failed``: a pass raised (:meth:`LiveStep.stopped`): shown with the error."""
        with self._lock:
            if step.closed:
                return
            step.closed = True
            self._ends.forget(step)
            publish = (step.passes > 0 or failed) and not self._closed
        step.recorder.close()
        step.recorder.unlink()  # its hooks' callback into the step: a cycle that kept each step's batch
        if not publish:
            step.store.release()
            return
        shown = step.publish(self.history, self._error, failed=failed, optimizers=self._optimizers)
        if shown is None:
            return
        graph, replay = shown
        if replay is not None:
            self.last_call = replay
        with self._lock:
            if not self._closed:
                self._shelf.put(Captured.of(graph, step.collected, step.store), step.failed, step.serial)

    def _drop(self, step: LiveStep) -> None:
        """``step`` is part of another (:meth:`Ends.joined`): its hooks go, it is never shown."""
        with self._lock:
            if step.closed:
                return
            step.closed = True
            self._ends.forget(step)
        step.abandon()

    # -- publishing (the owner thread only) ------------------------------------------------------

    def cell_done(self) -> None:
        """End of a notebook cell (IPython's ``post_run_cell``): publish what is ready, and let the
        next cell's first step be captured whatever the rate limits say (one step per cell is
        interactive use, not a loop)."""
        forward, outer = self._forward, self._calls.outer  # a capture of this thread's forward still open:
        if forward is not None and forward.thread == threading.get_ident() and not (outer and on_stack(outer)):
            self._end_forward()  # interrupted (a KeyboardInterrupt skips the end hook), ended as a next call would
        self._ends.cell_ended(threading.get_ident())
        self._numbers.cell_ended()
        self.flush()
        self._pace.lift()

    def _loop_turn(self) -> None:
        """The kernel's asyncio loop got control (no IPython): publish what is ready. Not the end of
        a cell — the loop also gets control while a thread trains and at each ``await`` of an async
        loop — so the limits are left alone; the next step's ``Pace.new_run`` decides."""
        self._pace.turned()
        self._ends.cell_ended(threading.get_ident())
        self.flush()

    def flush(self) -> None:
        if threading.get_ident() == self._owner:
            self._shelf.show(self.errors, lambda: self._closed, self._error)

    def close(self) -> None:
        """Remove every hook; from any thread, at any time (inside a hook, twice). A captured forward
        running on another thread keeps the end hook until it ends: its source tracker is on that
        thread's mode stack, which only that thread can change (``_let_go``)."""
        here = threading.get_ident()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            forward, self._forward = self._forward, None
            tracker, sources, thread = (None, None, None) if forward is None else \
                (forward.tracker, forward.sources, forward.thread)  # fmt: skip
            self._pace.end_of_run = None
            steps = self._ends.take_all()
            for step in steps:
                step.closed = True
            self._shelf.clear()
            if sources is not None:
                sources.stopped = True  # records nothing more; its thread's end hook takes it off
                if thread not in (None, here) and alive(thread):
                    self._linger = thread
            for h in self._handles:
                if h is not self._end_hook or self._linger is None:
                    h.remove()
            self._handles = []
            if self._linger is None:
                self._end_hook = None
        if tracker is not None:
            tracker.stop()
        if sources is not None and self._linger is None:
            remove_mode(sources)  # this thread's (closed inside its own captured forward), or gone
        for step in steps:
            step.abandon()
        self._optimizers.close()
        self._marks.close()
        if self._ipython_flush is not None:
            self._ipython_flush()
            self._ipython_flush = None

    def _let_go(self) -> None:
        """An end hook after close(), on the thread running it: take off this thread's mode stack the
        tracker close() stopped; once the thread close() waited for did, the end hook removes itself
        (not while torch runs always_call hooks after an exception: it iterates the hook dict then,
        and the model's next call removes it)."""
        drop_stopped_trackers()
        self._calls.reset()
        with self._lock:
            if self._linger == threading.get_ident():
                self._linger = None
            hook = self._end_hook if self._linger is None and not in_except() else None
            if hook is not None:
                self._end_hook = None
        if hook is not None:
            hook.remove()

    def _error(self, e: BaseException) -> str:
        """Keep ``e`` for the view (the first 20), in one line: torch's dispatcher errors run to kilobytes."""
        text = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
        if len(self.errors) < 20:
            self.errors.append(text)
        return text
