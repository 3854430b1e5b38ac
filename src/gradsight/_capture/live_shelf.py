"""The live step waiting to be shown, and showing it (:class:`Shelf`).

Steps end on any thread (a training thread's, an autograd worker's); the view is touched only from
the thread that made the debugger (see live.py), when it next gets control. Until then a later step
replaces the one waiting, except that one whose backward raised is kept over another thread's step
that finished: a failure always reaches the view (the next finished step of its own thread replaces
it, as a retried step should).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from .records import Captured
from .walk import gc_paused


class Shelf:
    """What :meth:`show` hands to the view: ``publish`` gets the step, ``failed`` its backward's error
    (None: it finished; the view's status), ``report`` errors of gradsight's own (and the failure when
    there is no ``failed``)."""

    def __init__(self, publish: Callable[[Captured], None], report: Callable[[str], None] | None,
                 failed: Callable[[str | None], None] | None) -> None:  # fmt: skip
        self._publish_fn = publish
        self._report_fn = report  # shows an error in the view (owner thread)
        self._failed_fn = failed  # a shown step's backward raised this (None: it finished): the view's status
        self._lock = threading.Lock()
        self._ready: Captured | None = None  # (under _lock) finished, waiting for the owner thread
        self._failed: str | None = None  # (under _lock) its backward's error
        self._thread = 0  # (under _lock) the thread whose step it is (threads.thread_serial)
        self._failure_shown = False  # the last step shown had one (report: cleared by the next)
        self._reported = 0  # errors shown so far

    def put(self, ready: Captured, failed: str | None, thread: int) -> None:
        """``ready``, the step of ``thread`` (its ``thread_serial``), waits to be shown (``failed``: its
        backward raised this)."""
        with self._lock:
            if failed is None and self._failed is not None and thread != self._thread:
                return  # another thread's failure not shown yet stays: a failure must reach the view
            self._ready, self._failed, self._thread = ready, failed, thread

    def clear(self) -> None:
        with self._lock:
            self._ready, self._failed = None, None

    def show(self, errors: list[str], closed: Callable[[], bool], error: Callable[[BaseException], str]) -> None:
        """Hand what waits to the view (the owner thread), then the newest of ``errors`` not shown yet.
        Runs in the user's forward (the model's next call): never raises into it."""
        with self._lock:
            ready, self._ready = self._ready, None
            failed, self._failed = self._failed, None
        try:
            if ready is not None and not closed():
                with gc_paused(promote=False):  # the view's graph, JSON and diff: see LiveStep.publish
                    self._publish_fn(ready)
                self._show_failure(failed)
        except Exception as e:
            error(e)
        if self._report_fn is not None and len(errors) > self._reported and not closed():
            self._reported = len(errors)
            with contextlib.suppress(Exception):  # nowhere left to tell
                self._report_fn(f"gradsight could not record a live step: {errors[-1]}")

    def _show_failure(self, failed: str | None) -> None:
        """After a step is shown: the error of its backward (None: it finished), through ``failed``
        (the view's status and error); without it, the error alone through ``report``."""
        if self._failed_fn is not None:
            self._failed_fn(failed)
        elif self._report_fn is not None and (failed is not None or self._failure_shown):
            self._report_fn(failed or "")
        self._failure_shown = failed is not None
