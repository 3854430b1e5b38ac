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
traceback has, and stay. Nor do the two frames torch adds where a function written in Python
(``Tensor.backward``, ``F.softmax``) hands itself to gradsight's torch-function mode, which calls it
again (:func:`mode_detours`; the ``%%gradsight`` magic relinks its error's traceback without them:
:func:`without_detours`). :func:`user_traceback` changes nothing on the exception: its frames are
read into a ``TracebackException`` and filtered there. An exception out of gradsight's own code (a bug,
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

import ast
import inspect
import itertools
import linecache
import os
import traceback
import types
import weakref
from types import TracebackType
from typing import Any

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
        if own_bug(formatted, e):
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


def own_bug(formatted: traceback.TracebackException, error: BaseException | None = None) -> bool:
    """Whether the exception came out of gradsight's own code: its innermost frame is gradsight's,
    on a line that is no ``raise`` (what gradsight refuses on purpose reads as the user's error) and
    in no torch mode passing the user's op on (``__torch_function__``: torch raised inside the op);
    not a warning turned into an error (gradsight re-issues warnings at the user's line); not a
    TypeError of gradsight's call of a callable the user gave it (``error``'s, :func:`_calls_users`)."""
    if not formatted.stack or issubclass(formatted.exc_type or type(None), Warning):
        return False
    frame = formatted.stack[-1]
    line = (frame.line or "").lstrip()
    own = is_own(frame.filename) and frame.name not in _PASSING_ON and not line.startswith("raise")
    return own and not (error is not None and _calls_users(error))


# id(owner) -> the ids of the callables the user gave it (gradsight.debugger(fn), loss=). By id: a
# builtin (torch.randn) takes no weak reference; the owner (the run's spec) holds them, so while it
# lives their ids are theirs, and its entry goes with it.
_users: dict[int, frozenset[int]] = {}


def users_callables(owner: Any, *callables: Any) -> None:
    """Mark ``callables`` (None skipped) as the user's for as long as ``owner`` lives: a TypeError
    raised by gradsight's call of one is the user's mistake (:func:`own_bug`)."""
    _users[id(owner)] = frozenset(id(c) for c in callables if c is not None)
    weakref.finalize(owner, _users.pop, id(owner), None)


def _calls_users(e: BaseException) -> bool:
    """Whether ``e`` is a TypeError raised right at gradsight's call of one of the user's callables
    (:func:`users_callables`): its innermost frame is gradsight's call site, so the callable never ran
    (its arguments did not bind, whatever the message: Python's ``missing 1 required``, torch's
    ``received an invalid combination of arguments``). A TypeError deeper in gradsight's own code,
    or of its call of any other function, stays gradsight's bug."""
    if not isinstance(e, TypeError) or not _users or e.__traceback__ is None:
        return False
    tb = e.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    if not is_own(tb.tb_frame.f_code.co_filename):
        return False
    callee = _callee(tb)
    return callee is not _UNKNOWN and any(id(callee) in ids for ids in _users.values())


_UNKNOWN = object()


def _callee(tb: TracebackType) -> Any:
    """What the call that raised at ``tb`` called: its expression (``fn()``, ``spec.loss(output)``),
    read from the source at the instruction's position (Python 3.11+; on 3.10, the line's one call), a
    local name and attributes read statically (no property runs); :data:`_UNKNOWN` for anything else."""
    code, name = tb.tb_frame.f_code, tb.tb_frame.f_code.co_filename
    positions = getattr(code, "co_positions", None)
    try:
        first, last, start, end = (
            next(itertools.islice(positions(), tb.tb_lasti // 2, None)) if positions else (None,) * 4
        )
        if first is None or last is None or start is None or end is None:
            line = ast.parse(linecache.getline(name, tb.tb_lineno).strip())
            calls = [node for node in ast.walk(line) if isinstance(node, ast.Call)]
            call: ast.expr = calls[0] if len(calls) == 1 else ast.Constant(None)
        else:
            lines = [linecache.getline(name, n).encode() for n in range(first, last + 1)]
            lines[-1] = lines[-1][:end]  # (offsets in UTF-8 bytes)
            lines[0] = lines[0][start:]
            call = ast.parse(b"".join(lines).decode().strip(), mode="eval").body
    except (StopIteration, SyntaxError, UnicodeDecodeError, ValueError):
        return _UNKNOWN
    return _read(call.func, tb.tb_frame.f_locals) if isinstance(call, ast.Call) else _UNKNOWN


def _read(node: ast.expr, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return names.get(node.id, _UNKNOWN)  # not a global: gradsight's own imports are no user's
    if not isinstance(node, ast.Attribute):
        return _UNKNOWN
    owner = _read(node.value, names)
    try:
        value = inspect.getattr_static(owner, node.attr) if owner is not _UNKNOWN else _UNKNOWN
    except AttributeError:
        return _UNKNOWN
    return value.__get__(owner) if isinstance(value, types.MemberDescriptorType) else value


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
        detours = mode_detours([(f.filename, f.name) for f in current.stack])
        frames = [f for k, f in enumerate(current.stack) if k not in detours and not is_own(f.filename)]
        first = next((i for i, f in enumerate(frames) if not f.filename.startswith(_TORCH)), 0)
        current.stack = traceback.StackSummary.from_list(frames[first:])
        group = getattr(current, "exceptions", None) or []  # an ExceptionGroup's (Python 3.11+)
        stack.extend(c for c in (current.__cause__, current.__context__, *group) if c is not None)


_OVERRIDES = _TORCH + "overrides.py"


def mode_detours(frames: list[tuple[str, str]]) -> set[int]:
    """The indices of the frames (filename, function name; outermost first) that only gradsight's
    torch-function mode put there: a torch function written in Python (``Tensor.backward``,
    ``F.softmax``) hands itself to the active mode through ``overrides.handle_torch_function``, and
    the mode calls it again — without the mode, one frame of it. Its first frame and torch's dispatch
    are left out where the next frame, past gradsight's own (the mode's), is the same function again;
    a mode of the user's (or torch's, ``with torch.device(...)``) keeps its frames between them.

    >>> user, fn = ("cell.py", "<module>"), ("_tensor.py", "backward")
    >>> sorted(mode_detours([user, fn, (_OVERRIDES, "handle_torch_function"), fn]))
    [1, 2]
    """
    found: set[int] = set()
    for i in range(1, len(frames)):
        if frames[i] != (_OVERRIDES, "handle_torch_function"):
            continue
        j = i + 1
        while j < len(frames) and is_own(frames[j][0]):
            j += 1
        if j < len(frames) and frames[j] == frames[i - 1]:
            found.update((i - 1, i))
    return found


def without_detours(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` relinked without the frames :func:`mode_detours` finds (a ``%%gradsight`` cell's error,
    raised again by the magic): the traceback a plain cell shows."""
    entries: list[TracebackType] = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    detours = mode_detours([(e.tb_frame.f_code.co_filename, e.tb_frame.f_code.co_name) for e in entries])
    kept = [e for k, e in enumerate(entries) if k not in detours]
    for before, after in itertools.pairwise(kept):
        before.tb_next = after
    if kept:
        kept[-1].tb_next = None
    return kept[0] if kept else None
