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
``TracebackException`` and filtered there. An exception out of gradsight's own code (a bug,
:func:`own_bug`) keeps every frame: hidden, it would read as the user's.

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
import re
import sys
import traceback

import torch

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # src/gradsight/
_TORCH = os.path.dirname(torch.__file__) + os.sep


def is_own(filename: str) -> bool:
    """Whether ``filename`` is a module of gradsight itself (not the user's, not torch's)."""
    return filename.startswith(_PACKAGE)


def user_traceback(e: BaseException) -> str:
    """``e`` formatted as ``traceback.format_exception`` does, without gradsight's frames; an error
    gradsight raised itself (no frame of the user's) reads as its one line, ``TypeError: ...``. A bug
    of gradsight's (:func:`own_bug`) keeps every frame, under a line (:data:`OWN_BUG`) asking for a
    report. Formatting never
    raises: a traceback it cannot filter is formatted whole, one it cannot format is its last line."""
    try:
        formatted = traceback.TracebackException(type(e), e, e.__traceback__, compact=True)
        if own_bug(formatted):
            return OWN_BUG + "".join(formatted.format()).rstrip()
        _drop_own(formatted)
        return "".join(formatted.format()).rstrip()
    except Exception:  # RecursionError, MemoryError-free failures of a strange exception's __str__
        try:
            return "".join(traceback.format_exception(e)).rstrip()
        except Exception:
            return f"{type(e).__name__}: (the error could not be formatted)"


OWN_BUG = "gradsight failed in its own code (a bug: please report it with this traceback):\n"
_PASSING_ON = frozenset({"__torch_function__", "__torch_dispatch__"})  # they call the user's torch op


def own_bug(formatted: traceback.TracebackException) -> bool:
    """Whether the exception came out of gradsight's own code: its innermost frame is gradsight's,
    on a line that is no ``raise`` (what gradsight refuses on purpose reads as the user's error) and
    in no torch mode passing the user's op on (``__torch_function__``: torch raised inside the op);
    not a warning turned into an error (gradsight re-issues warnings at the user's line)."""
    if not formatted.stack or issubclass(formatted.exc_type or type(None), Warning):
        return False
    frame = formatted.stack[-1]
    line = (frame.line or "").lstrip()
    own = is_own(frame.filename) and frame.name not in _PASSING_ON and not line.startswith("raise")
    return own and not _not_bound(formatted)


# Python's (and torch's argument parser's) words for a call whose arguments did not bind
_UNBOUND = re.compile(r"([\w.<>]+)\(\) (?:missing \d+ required|takes |got an unexpected keyword|got multiple values)")


def _not_bound(formatted: traceback.TracebackException) -> bool:
    """Whether the error is a call to a function not of gradsight's whose arguments did not bind: the
    user's own callable (``gradsight.debugger(fn)`` of an ``fn(model, x)``; ``loss=F.mse_loss``) given
    what gradsight passes it. It never ran, so the innermost frame is gradsight's call site. Binding
    errors name the function (its ``__qualname__``); one of gradsight's own stays its bug."""
    if not issubclass(formatted.exc_type or type(None), TypeError):
        return False
    found = _UNBOUND.match(str(formatted))
    return found is not None and found.group(1).split(".<locals>")[0] not in _own_names()


def _own_names() -> set[str]:
    """The qualified names of gradsight's functions, classes and methods (of its modules imported so far)."""
    names: set[str] = set()
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", None)
        if not isinstance(name, str) or not (name == "gradsight" or name.startswith("gradsight.")):
            continue
        for value in list(vars(module).values()):
            if getattr(value, "__module__", None) != name:
                continue
            members = list(vars(value).values()) if isinstance(value, type) else []
            names.update(str(getattr(v, "__qualname__", "")) for v in [value, *members])
    names.discard("<lambda>")  # a module's lambda: a user's lambda is named so too
    return names


def _drop_own(formatted: traceback.TracebackException) -> None:
    """Leave gradsight's frames out of ``formatted`` and of the exceptions chained to it, iteratively
    (a retry loop chains thousands with ``raise ... from``), each once (a chain may loop)."""
    seen: set[int] = set()
    stack = [formatted]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        frames = [f for f in current.stack if not is_own(f.filename)]
        first = next((i for i, f in enumerate(frames) if not f.filename.startswith(_TORCH)), 0)
        current.stack = traceback.StackSummary.from_list(frames[first:])
        group = getattr(current, "exceptions", None) or []  # an ExceptionGroup's (Python 3.11+)
        stack.extend(c for c in (current.__cause__, current.__context__, *group) if c is not None)
