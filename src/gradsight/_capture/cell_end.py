"""How live mode learns that the user's cell ended: IPython's ``post_run_cell`` event, or where
there is no IPython (marimo) a callback on the asyncio loop that runs the cells.

live.py publishes steps finished on other threads (CUDA's autograd workers) and decides when the
rate limits lift from these; see its module docstring for the rules.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

# The loop callback runs at most once per LOOP_HOLD seconds for steps not captured (a training thread
# ends a step every few ms, and waking the loop each time would cost ~25 µs a step); well below
# live.IDLE_FLOOR, so the loop has noted its turn before a person's pause is over.
LOOP_HOLD = 0.05


def on_post_run_cell(fn: Callable[[], None]) -> Callable[[], None] | None:
    """``fn`` at the end of every IPython cell; returns the remover (None: no IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    if ip is None:
        return None

    def on_post_run_cell(*_args: Any) -> None:
        fn()

    ip.events.register("post_run_cell", on_post_run_cell)
    return lambda: ip.events.unregister("post_run_cell", on_post_run_cell)


class LoopCallback:
    """``fn`` on the asyncio loop running in the thread that made the debugger, where there is no
    IPython: marimo's kernel runs its cells inside an asyncio loop on the kernel's thread. A callback
    queued there runs when the loop gets control: after the cells of the current run, but also at
    once while a thread trains and the loop idles, and at each ``await`` of an async cell. No loop
    running in that thread (a plain script): none (``on_running_loop``)."""

    @classmethod
    def on_running_loop(cls, fn: Callable[[], None]) -> LoopCallback | None:
        try:
            return cls(fn, asyncio.get_running_loop())
        except RuntimeError:
            return None

    def __init__(self, fn: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        self._fn = fn
        self._loop: asyncio.AbstractEventLoop | None = loop
        self._lock = threading.Lock()
        self._pending = False  # _run is queued on the loop
        self._held = False  # _run ran less than LOOP_HOLD ago: a queue() not at once waits for _again
        self._wanted = False  # queue() was called since _run last ran

    def queue(self, *, at_once: bool = False) -> None:
        """From any thread: ``fn`` runs on the loop after this call — at its next turn, or (unless
        ``at_once``) within LOOP_HOLD of the last run, so a training thread that ends a step every
        millisecond does not wake the loop every millisecond. Calls before it runs run it once."""
        loop = self._loop
        if loop is None:
            return
        with self._lock:
            self._wanted = True
            if self._pending or (self._held and not at_once):
                return
            self._pending = True
        try:
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed (the kernel is shutting down)
            self._loop = None

    def _run(self) -> None:
        with self._lock:
            self._pending = self._wanted = False
            hold, self._held = not self._held, True
        if hold:
            asyncio.get_running_loop().call_later(LOOP_HOLD, self._again)
        self._fn()

    def _again(self) -> None:
        with self._lock:
            self._held = False
            again = self._wanted and not self._pending
            self._pending = self._pending or again
        if again:
            self._run()
