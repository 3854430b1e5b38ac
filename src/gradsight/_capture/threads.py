"""What a live session's hooks need to know about the thread they run on.

A torch-function mode lives on one thread's mode stack and can only be taken off there
(:func:`remove_mode`, :func:`drop_stopped_trackers`). A model's forward hooks run inside
``Module._call_impl``; its frame tells the outer call of a model from a call the model's own forward
makes of itself (:func:`module_call`, :func:`on_stack`): test-time augmentation
(``(self(x, tta=False) + self(x.flip(0), tta=False)) / 2``) and weight-tied recursion are one step.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import torch

from .source import SourceTracker

_CALL_IMPL = torch.nn.Module._call_impl.__code__
_RUN_BACKWARD = torch.autograd.graph._engine_run_backward.__code__  # every backward() and grad() runs it


def module_call(depth: int) -> FrameType | None:
    """The frame of the ``Module._call_impl`` running the hook that calls this, ``depth`` frames above
    the caller when torch runs the hook from ``_call_impl``'s nested ``inner`` function (and one less when it
    runs an always_call hook after an exception); None if torch calls hooks some other way (then
    nested calls are not told apart). Only that frame is materialized: a few hundred ns per call."""
    try:
        for d in (depth, depth - 1):
            frame = sys._getframe(d + 1)
            if frame.f_code is _CALL_IMPL:
                return frame
    except ValueError:  # not that deep
        pass
    return None


def on_stack(frame: FrameType) -> bool:
    """Is ``frame`` still running on this thread (a caller of this call)? A frame whose end hook never
    ran (a KeyboardInterrupt skips always_call hooks) is not."""
    f: FrameType | None = sys._getframe(1)
    while f is not None:
        if f is frame:
            return True
        f = f.f_back
    return False


class Calls(threading.local):
    """A live session's view of its model's calls, per thread: whether gradsight re-runs the last
    step here (:meth:`paused`: other threads train on), and this thread's outermost running call of
    the model (:meth:`enter`, :meth:`ended`), so that calls its forward makes of the model are part of
    that call's step."""

    def __init__(self) -> None:
        self.on = False  # paused
        self.outer: FrameType | None = None  # the _call_impl frame of the outermost call
        self.nested = False  # that call called the model

    @contextmanager
    def paused(self) -> Iterator[None]:
        outer = self.on
        self.on = True
        try:
            yield
        finally:
            self.on = outer

    def enter(self) -> bool:
        """A forward pre-hook's: is this call made inside this thread's running call of the model?
        If not, it is that call now (an earlier one whose end hook never ran is no longer on the stack)."""
        frame = module_call(4)  # _call_impl → inner → ModelHook → the session's pre-hook → here
        outer = self.outer
        if outer is not None and outer is not frame and on_stack(outer):
            self.nested = True
            return True
        self.outer, self.nested = frame, False
        return False

    def ended(self) -> bool:
        """A forward hook's: does this call end this thread's outermost call (not one its forward made)?"""
        if self.nested and self.outer is not module_call(4):  # _call_impl → inner → ModelHook → hook → here
            return False
        self.reset()
        return True

    def reset(self) -> None:
        self.outer, self.nested = None, False


def in_except() -> bool:
    """Is an exception being handled on this thread? torch runs always_call forward hooks after an
    exception while iterating the model's hook dict itself: a hook must not remove one then."""
    return sys.exc_info()[1] is not None


def remove_mode(mode: Any) -> None:
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


_SERIALS = itertools.count(1)


class _Serial(threading.local):
    def __init__(self) -> None:
        self.n = next(_SERIALS)


_SERIAL = _Serial()


def thread_serial() -> int:
    """This thread's number, never another's: a thread's ident may be a dead thread's, reused."""
    return _SERIAL.n


def alive(thread_id: int) -> bool:
    return any(t.ident == thread_id and t.is_alive() for t in threading.enumerate())


def backward_elsewhere() -> bool:
    """Is a thread other than this one inside a backward call now (``backward()`` or
    ``torch.autograd.grad``, in torch's engine)? A pass that began and has not ended may still be
    running there (the user's worker thread, or its caller while CUDA's device threads run it), not
    have raised. Walks every thread's stack: only asked of a step whose pass did not end."""
    here = threading.get_ident()
    for ident, frame in sys._current_frames().items():
        f: FrameType | None = frame if ident != here else None
        while f is not None:
            if f.f_code is _RUN_BACKWARD:
                return True
            f = f.f_back
    return False


def drop_stopped_trackers() -> None:
    """Take off this thread's stack the source trackers that a ``close()`` on another thread stopped."""
    for mode in torch.overrides._get_current_function_mode_stack():  # type: ignore[no-untyped-call]
        if isinstance(mode, SourceTracker) and mode.stopped:
            remove_mode(mode)
