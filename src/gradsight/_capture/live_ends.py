"""When a live session's captured steps end, and whether they failed (:class:`Ends`).

A step ends with its last backward pass (one that ran its graph and freed it), or later: at the end
of the cell or loop turn, at its thread's next call of the model, or when a new step is captured.
Then it is shown, failed if a pass of it began and never ended (it raised) — but not while a pass
may still be running on another thread (a worker the user has not joined yet): such a step waits
aside for that pass's end. A step none of whose hooks ran is failed too when the shell's last error
is a backward over its graph that raised above it (in the loss). live.py retires them (hooks off,
graph published).

A step superseded before any backward reached it waits for its first pass (``waiting``): a second
call whose output gets no backward (a DQN target ``model(s2).max(1)[0].detach()``, a stop-gradient
branch) comes before the first call's ``loss.backward()``. Its pass's end shows it; the cell's end,
the next capture or the current step's last pass drop it. A pass that runs it and the current step
(a siamese step: ``loss(model(x1), model(x2)).backward()``) makes them one step, the current one's.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import torch

from .live_step import LiveStep
from .threads import alive

_graph_task_id = torch._C._current_graph_task_id  # -1 outside a backward pass on this thread


class Ends:
    """The session's current step (``step``, waiting for more of its passes) and those put aside, both
    under the session's ``lock``; ``retire(step, failed)`` ends one, ``error`` keeps what went wrong
    (these run in the user's forward: they never raise into it). Both are the session's methods, held
    weakly: a cycle would keep the session — and its last step's batch — until the cyclic GC ran.
    ``shell``: IPython keeps the last exception."""

    def __init__(self, lock: threading.Lock, retire: Callable[[LiveStep, bool], None],
                 error: Callable[[BaseException], str], *, shell: bool) -> None:  # fmt: skip
        self.lock = lock
        self.step: LiveStep | None = None  # captured, waiting for (more of) its backward passes
        self.aside: list[LiveStep] = []  # earlier ones with a pass running on another thread then
        # The one superseded before any backward reached it: a second call whose output needs no
        # backward (a DQN target ``model(s2).max(1)[0].detach()``, a stop-gradient branch) comes
        # before the first call's backward. Its next pass ends it (shown); the cell's end or the next
        # supersede drops it.
        self.waiting: list[LiveStep] = []
        self._retire_ref = weakref.WeakMethod(retire)  # (bound methods)
        self._error_ref = weakref.WeakMethod(error)
        self._shell = shell

    def _retire(self, step: LiveStep, failed: bool) -> None:
        retire = self._retire_ref()
        if retire is not None:
            retire(step, failed)

    def _error(self, e: BaseException) -> None:
        error = self._error_ref()
        if error is not None:
            error(e)

    def supersede(self, here: int) -> None:
        """Thread ``here`` captures a new step: the current one ends — shown if a pass of its graph
        ended (another thread's step) or raised — or, while a pass of it runs on another thread, waits
        aside: that pass's end retires it. One no backward reached yet waits too (``waiting``): its
        backward may come after this call (``q_next = model(s2).detach()`` before ``loss.backward()``);
        the one waiting before it is dropped."""
        earlier = self.step
        if earlier is None:
            return
        fresh = not (earlier.passes or earlier.unfinished or earlier.closed)
        with self.lock:
            if self.step is earlier:
                self.step = None
            dropped, self.waiting = (self.waiting, [earlier]) if fresh else ([], self.waiting)
        for step in dropped if fresh else [earlier]:
            self._end(step, here)

    def _end(self, step: LiveStep, here: int) -> None:
        """End ``step`` now (shown if a pass ended or raised, else dropped), or aside while a pass of it
        may run on another thread."""
        if step.in_flight():
            with self.lock:
                if not step.closed:
                    self.aside.append(step)
        else:
            self._retire(step, step.stopped(here))

    def set_aside(self, step: LiveStep) -> bool:
        """Is ``step`` no longer the current one (aside, or waiting for its first pass): its pass's end
        retires it."""
        return step in self.aside or step in self.waiting

    def joined(self, step: LiveStep) -> list[LiveStep]:
        """The pass ending now (the engine's callback, over ``step``'s graph) also ran another captured
        call of the model: the current step and one waiting for its first pass (a siamese step,
        ``loss(model(x1), model(x2)).backward()``). They are one step, the current one's: the waiting
        one is returned (the caller drops it) and the current one notes the call (:meth:`LiveStep.join`)."""
        current = self.step
        if current is None or current.closed or not self.waiting:
            return []
        if step is current:
            with self.lock:
                earlier = [s for s in self.waiting if not s.closed and s.recorder.ran_graph()]
        elif step in self.waiting and current.recorder.ran_graph():
            earlier = [step]
        else:
            return []
        for s in earlier:
            current.join(s)
        return earlier

    def stale(self, step: LiveStep) -> list[LiveStep]:
        """The current ``step``'s last pass ended: the steps waiting for their first pass are older
        graphs now (the user went on past them; a later backward over one differentiates a graph kept
        around), to be dropped; one whose pass raised still shows."""
        if step is not self.step or not self.waiting:
            return []
        with self.lock:
            return [s for s in self.waiting if not s.unfinished]

    def forget(self, step: LiveStep) -> None:
        """``step`` is retired (under the lock)."""
        if self.step is step:
            self.step = None
        if step in self.aside:
            self.aside.remove(step)
        if step in self.waiting:
            self.waiting.remove(step)

    def take_all(self) -> list[LiveStep]:
        """Every step not ended (under the lock: ``close()``)."""
        steps = [*self.aside, *self.waiting, *([self.step] if self.step is not None else [])]
        self.step, self.aside, self.waiting = None, [], []
        return steps

    def recalled(self, here: int) -> None:
        """This thread calls the model again while its step is open (its passes kept the graph). The
        step stays open — a WGAN-GP critic step differentiates D(interp)'s graph again after calling
        D(real) and D(fake) — but a pass that reaches only the leaves is the new forward's now
        (:meth:`LiveStep.recall`). No lock when there is no such step."""
        step = self.step
        if step is not None and step.passes and not step.closed and step.thread == here:
            step.recall()

    def cell_ended(self, here: int) -> None:
        """A step whose passes kept its graph, or whose backward raised, ends on thread ``here``: the
        cell ended (``here`` is the kernel's thread). Not inside a backward pass on this thread, and
        not a step of another thread still running (it may be between two passes), nor one whose pass
        runs on another thread now (its end retires it): the next capture, or that thread's end, ends
        it. A step none of whose hooks ran ends here if the shell's last error is a backward over it
        that raised above it (in the loss). No lock when there is no such step (every uncaptured step)."""
        self._aside_ended(here)
        self._waiting_ended(here)
        step = self.step
        if step is None or step.closed or (not self._shell and not (step.passes or step.unfinished)):
            return
        try:  # never break the user's forward
            if _graph_task_id() != -1 or (step.thread != here and alive(step.thread)):
                return
            if step.passes or step.unfinished:
                if not step.in_flight():
                    self._retire(step, step.stopped(here))
            elif step.raised_above():
                self._retire(step, True)
        except Exception as e:
            self._error(e)

    def called(self, here: int) -> None:
        """This thread calls the model (outside a backward): a pass over its step that began and never
        ended raised (the user's code went on; not one still running on another thread): the step is
        shown now, with the error (a step waiting for its first pass too). No lock when there is no
        such step."""
        self._aside_ended(here)
        if self.waiting:
            with self.lock:
                raised = [s for s in self.waiting if s.unfinished and not s.closed and s.thread == here]
            for waiting in raised:
                self._end(waiting, here)
        step = self.step
        if step is None or not step.unfinished or step.closed or step.thread != here:
            return
        try:  # never break the user's forward
            if step.stopped(here):
                self._retire(step, True)
        except Exception as e:
            self._error(e)

    def _aside_ended(self, here: int) -> None:
        """The steps put aside whose pass, running on another thread when the next step was captured,
        raised since (or whose thread ended): shown with the error, their hooks gone."""
        if not self.aside:
            return
        with self.lock:
            self.aside = [step for step in self.aside if not step.closed]
            ended = [step for step in self.aside if not step.unfinished or step.stopped(here)]
        for step in ended:
            try:
                self._retire(step, step.unfinished)
            except Exception as e:
                self._error(e)

    def _waiting_ended(self, here: int) -> None:
        """The cell ended (``here``: the kernel's thread): a step waiting for its first pass gets none
        now, unless its thread still runs (it may be before its backward); one whose pass raised is
        shown with the error. Hooks off either way."""
        if not self.waiting:
            return
        try:  # never break the user's forward
            if _graph_task_id() != -1:
                return
            with self.lock:
                ended = [s for s in self.waiting if not s.closed and (s.thread == here or not alive(s.thread))]
            for step in ended:
                self._end(step, here)
        except Exception as e:
            self._error(e)
