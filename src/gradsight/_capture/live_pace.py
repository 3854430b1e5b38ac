"""When live mode captures a step: the rate limits, and when they are lifted.

Steps are captured at most once per ``interval`` seconds and within ``share`` of the time, so a fast
training loop pays almost nothing. The end of an IPython cell lifts the limits (each interactive
cell's first step is shown). Without IPython (marimo) the kernel's asyncio loop gets control
whenever it idles (training on a thread) and at every ``await`` of an async training loop, not only
at the end of a cell; so the limits are lifted only for a step that looks like a new run a person
started: the loop got control after the model's last activity, and the model then stayed idle for
at least ``max(IDLE_FLOOR, IDLE_STEPS × the last captured step's time)`` (a loop starts its next
step at once; a person re-running a cell does not).
"""

from __future__ import annotations

import threading

from .cell_end import LoopCallback

# Without IPython, what makes a step "a new run" that gets the rate limits lifted: the model idle for
# at least IDLE_FLOOR seconds and at least IDLE_STEPS times the last captured step's time (its forward
# plus its backward, gradsight's work included: about twice a plain step's). A person re-running a
# cell takes longer than 0.2 s to see the output and click or type. A training loop's work from one
# forward's end to the next forward (backward, optimizer step, next batch) takes well under 0.2 s for
# fast steps and rarely reaches ~4 plain steps for slow ones; a loop that does idle that long
# (awaiting, or on a thread) is captured at most 1 / IDLE_FLOOR times a second and slowed at most
# ~1.2× (a captured step costs ~one plain step more, on top of >= 5 steps' time).
IDLE_FLOOR = 0.2
IDLE_STEPS = 2.0


class Pace:
    """A live session's rate limits (``due``, ``captured``, ``pass_ended``, ``lift``) and, where the
    kernel's asyncio loop stands in for IPython's end of a cell (``end_of_run``), the model's
    activity that tells a person's new run from a loop's next step (``new_run``, ``ran``)."""

    def __init__(self, interval: float, share: float, end_of_run: LoopCallback | None) -> None:
        self.interval = interval
        self.share = min(max(share, 1e-3), 1.0)
        self.end_of_run = end_of_run  # None: IPython's post_run_cell lifts the limits (or a plain script)
        self.last_capture = -float("inf")
        self.next_allowed = -float("inf")  # after a captured step, wait so captures stay a small share
        # (under _lock) when the model last ran (a forward's start or end, a captured backward's end),
        # whether the loop got control since, and the last captured step's time
        self._lock = threading.Lock()
        self.last_active = -float("inf")
        self.loop_turned = False
        self.step_time = 0.0

    def due(self, now: float) -> bool:
        return now - self.last_capture >= self.interval and now >= self.next_allowed

    def lift(self) -> None:
        """Capture the next step whatever the limits say (a new cell, a new run)."""
        self.last_capture = self.next_allowed = -float("inf")

    def pass_ended(self, now: float, started: float) -> None:
        """A captured step's pass ended ``now``, its forward having started at ``started``: wait so
        that captures stay within ``share`` of the time."""
        self.next_allowed = now + (now - started) * (1 / self.share - 1)

    def turned(self) -> None:
        """The kernel's asyncio loop got control."""
        with self._lock:
            self.loop_turned = True

    def new_run(self, now: float) -> bool:
        """A step begins: does it look like a new run a person started, not a loop's next step? Only
        where there is no IPython: the loop got control after the model's last activity, and the
        model has been idle since for long enough (see IDLE_FLOOR). Under IPython (no loop callback)
        post_run_cell decides, and a step costs no lock here."""
        if self.end_of_run is None:
            return False
        with self._lock:
            new = self.loop_turned and now - self.last_active >= max(IDLE_FLOOR, IDLE_STEPS * self.step_time)
            self.loop_turned = False
            self.last_active = now
        return new

    def ran(self, now: float, *, step_time: float | None = None, publish: bool = False) -> None:
        """The model was active until ``now`` (any thread): the loop must get control again before a
        step counts as a new run, so queue the loop callback (``publish``: a step is ready, at once)."""
        with self._lock:
            self.loop_turned = False
            self.last_active = max(self.last_active, now)
            if step_time is not None:
                self.step_time = step_time
        end_of_run = self.end_of_run  # (close() on the owner thread may clear it meanwhile)
        if end_of_run is not None:
            end_of_run.queue(at_once=publish)
