"""Tracebacks as the user's code raised them: without gradsight's own frames.

A runnable run calls the user's forward and loss, then torch's backward, from inside gradsight
(``run.py``, ``specs.py``, ``differentiate.py``): a traceback formatted as it is would show those
frames first, as if the error were gradsight's. :func:`user_traceback` formats an exception with
every frame of the gradsight package left out — also in the exceptions it was raised from
(``__cause__``, ``__context__``) — the way a ``%%gradsight`` cell hides its source tracker's frames
(``cell._without_tracker``). torch's frames stay, as in any traceback of the user's, but for those
before the user's first frame: they are gradsight's calls into torch (``Module.__call__`` of the
model, ``torch.autograd.grad``, which the user never called); with no frame of the user's at all
(a bare ``nn.Linear`` given the wrong shape, a backward that fails in torch) they are all the
traceback has, and stay. Nothing is changed on the exception: its frames are read into a
``TracebackException`` and filtered there.

>>> def fail() -> None:
...     raise ValueError("user bug")
>>> try:
...     fail()
... except ValueError as e:
...     print(user_traceback(e).splitlines()[-1])
ValueError: user bug
"""

from __future__ import annotations

import os
import traceback

import torch

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # src/gradsight/
_TORCH = os.path.dirname(torch.__file__) + os.sep


def is_own(filename: str) -> bool:
    """Whether ``filename`` is a module of gradsight itself (not the user's, not torch's)."""
    return filename.startswith(_PACKAGE)


def user_traceback(e: BaseException) -> str:
    """``e`` formatted as ``traceback.format_exception`` does, without gradsight's frames; an error
    gradsight raised itself (no frame of the user's) reads as its one line, ``TypeError: ...``."""
    formatted = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
    _drop_own(formatted, set())
    return "".join(formatted.format()).rstrip()


def _drop_own(formatted: traceback.TracebackException, seen: set[int]) -> None:
    """Leave gradsight's frames out of ``formatted`` and of the exceptions chained to it (each once:
    a chain may loop)."""
    if id(formatted) in seen:
        return
    seen.add(id(formatted))
    frames = [f for f in formatted.stack if not is_own(f.filename)]
    first = next((i for i, f in enumerate(frames) if not f.filename.startswith(_TORCH)), 0)
    formatted.stack = traceback.StackSummary.from_list(frames[first:])
    group = getattr(formatted, "exceptions", None) or []  # an ExceptionGroup's (Python 3.11+)
    for chained in (formatted.__cause__, formatted.__context__, *group):
        if chained is not None:
            _drop_own(chained, seen)
