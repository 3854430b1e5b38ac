"""The forward source line of each node: a cheap stack capture, not anomaly mode.

Anomaly mode records a full traceback per node and costs 2–3× (research/autograd-facts.md §4.6).
Here a ``TorchFunctionMode`` sees each torch call the user's code makes; only when the call created
autograd nodes (the sequence counter moved) does it walk up to the first frame outside torch and
gradsight and remember ``(first seq, end seq, file, line)``, with the call site (code object and
instruction): a line that calls one function twice (``torch.log(p) + torch.log(1 - p)``) names the
call each node came from (Python 3.11+ ``co_positions``). The text of the line is looked up only
when the graph is built.

A warning torch raises from C++ inside an op (``float()`` of a tensor that requires grad, oneDNN
notes) names the innermost Python frame: with the mode in between, that was this file. In a
runnable run (``rehome_warnings=True``), while the tracker is entered, warnings are collected
instead and re-issued when it exits, each at the user's line that made the call, through the
user's filters and "once" registries. Around a ``%%gradsight`` cell (``warn_at_once=True``) only
the warnings that name this file are caught, and each is re-issued at once at the user's line, so
the cell's own ``warnings`` calls and filters act as in a plain cell and stay after it.
"""

from __future__ import annotations

import bisect
import itertools
import linecache
import os
import re
import sys
import warnings
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, _pop_mode, _push_mode

from .filters import Rehoming, add_filter, remove_filter
from .modules import compiling

_next_seq = torch._C._autograd._get_sequence_nr
_stack_depth = torch._C._len_torch_function_stack
_WARNINGS_FILE = warnings.__file__
_REGISTER_HOOK = torch.Tensor.register_hook
INTERNAL_ROOTS = (
    os.path.dirname(torch.__file__) + os.sep,
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # gradsight itself
)


class SourceTracker(TorchFunctionMode):
    """Use as a context manager around the forward."""

    def __init__(self, *, rehome_warnings: bool = False, warn_at_once: bool = False, keep: int | None = None,
                 track_hooks: bool = False) -> None:  # fmt: skip
        super().__init__()
        self._keep_calls = keep  # remember the last ``keep`` calls that made nodes (None: all; a cell's loop: not)
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._where: list[_Call] = []
        self._internal: dict[str, bool] = {}
        self._text: dict[_Call, str] = {}  # call -> what source_of returns
        # (file, line, func) -> the distinct call sites on that line that called ``func`` and made
        # nodes, rebuilt from _where when calls were recorded since (``_made``: their count)
        self._sites: dict[tuple[str, int, Any], set[tuple[Any, int]]] = {}
        self._made = self._sites_made = 0
        self._rehome = rehome_warnings
        # Nodes whose output tensor got a hook (h.register_hook) during the forward: a hook may change
        # the gradient before the node's prehooks see it (hooks.derivable must not read through it).
        # Node objects keep activations alive: run.py empties this before backward; only runnable
        # runs track them (a cell's training loop kept every step's graph until the cell ended).
        self.hooked: set[Any] = set()
        self._track_hooks = track_hooks
        self.stopped = False  # switched off from another thread: pass calls through, record nothing
        # A runnable run's own frame (run.run): frames above it are not the forward — the line that
        # made the debugger, or ipywidgets' dispatch of a Re-run from the view. Calls with no user
        # frame below it (a bare nn.Sequential as the model) get ``origin``: a replayed live step's
        # line that called the model; none in a runnable run (the debugger(...) line made no op).
        self.barrier: FrameType | None = None
        self.origin: tuple[str, int] | None = None
        self._catch: Any = None
        self._warned: list[tuple[Any, Any, str, int, dict[str, Any] | None]] = []
        self._at_once = _AtOnce(self) if warn_at_once else None

    def __enter__(self) -> SourceTracker:
        # Only around a forward gradsight runs itself, inside its own `with` (runnable runs): the
        # warnings module is process-wide, so hooks that may be skipped (a KeyboardInterrupt skips
        # torch's always_call forward hooks), overlapping sessions or other threads' forwards must
        # not swap its filters — live steps leave warnings alone. A %%gradsight cell runs inside
        # gradsight's `with` too, but it is the user's code: only warnings naming this file are caught
        # there (_AtOnce), and whatever the cell does to the warnings module stays.
        if self._rehome:
            # every warning reaches _keep; the user's filters apply on re-issue. Not catch_warnings: its
            # exit re-arms every "once" warning of the session (filters.py).
            self._catch = (add_filter("always"), warnings.showwarning)
            warnings.showwarning = self._keep
        elif self._at_once is not None:
            self._at_once.enter()
        return super().__enter__()  # type: ignore[no-untyped-call,no-any-return]

    def __exit__(self, *exc: Any) -> None:
        _leave_mode_stack(self)
        if self._at_once is not None:
            self._at_once.exit()
        if self._catch is None:
            return
        entry, shown = self._catch
        remove_filter(entry)
        if warnings.showwarning == self._keep:
            warnings.showwarning = shown
        self._catch = None
        warned, self._warned = self._warned, []
        for message, category, filename, lineno, module_globals in warned:
            registry = None if module_globals is None else module_globals.setdefault("__warningregistry__", {})
            module = None if module_globals is None else module_globals.get("__name__")  # filters by module=
            warnings.warn_explicit(message, category, filename, lineno, module=module, registry=registry)

    def _keep(self, message: Any, category: Any, filename: str, lineno: int, *_: Any, **__: Any) -> None:
        frame: FrameType | None = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == _WARNINGS_FILE:
            frame = frame.f_back
        if filename == __file__:  # raised by torch inside an op: the user's line that called it
            frame = self._user_frame(frame)
        else:  # the frame that warned, for its module's registry
            while frame is not None and (frame.f_code.co_filename, frame.f_lineno) != (filename, lineno):
                frame = frame.f_back
        if frame is not None:
            filename, lineno = frame.f_code.co_filename, frame.f_lineno
        self._warned.append((message, category, filename, lineno, None if frame is None else frame.f_globals))

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        __tracebackhide__ = True  # an op that raises (or warns as an error): IPython shows the user's line, not ours
        if self.stopped or compiling():  # dynamo traces modes: stay invisible to it (a compiled region is one node)
            return func(*args, **(kwargs or {}))
        if func is _REGISTER_HOOK and self._track_hooks and args and args[0].grad_fn is not None:
            self.hooked.add(args[0].grad_fn)  # a hook that may change what flows into this node
        start = _next_seq()
        out = func(*args, **(kwargs or {}))
        end = _next_seq()
        if end > start:
            caller = sys._getframe(1)
            frame = self._user_frame(caller)
            if frame is not None:  # the call site too: two torch.log calls on one line are told apart
                # (not a module's calls: self.fc1(x) and self.fc2(h) both call F.linear, from inside
                # nn.Module's __call__, and their nodes' module paths tell them apart already)
                lasti = frame.f_lasti if _no_module_between(caller, frame) else -1
                where: _Call | None = (frame.f_code.co_filename, frame.f_lineno, frame.f_code, lasti, func)
            else:
                where = None if self.origin is None else (*self.origin, None, -1, None)
            if where is not None:
                self._starts.append(start)
                self._ends.append(end)
                self._where.append(where)
                self._made += 1
                if self._keep_calls is not None and len(self._starts) > self._keep_calls:
                    self._forget_older()
        return out

    def _forget_older(self) -> None:
        """Drop the older half of what was recorded: a training loop in a cell makes nodes step after
        step, and its last step's are the ones a graph shows (the older ones then have no line)."""
        half = len(self._starts) // 2
        del self._starts[:half], self._ends[:half], self._where[:half]

    def _user_frame(self, frame: FrameType | None) -> FrameType | None:
        internal = self._internal
        while frame is not None and frame is not self.barrier:
            name = frame.f_code.co_filename
            flag = internal.get(name)
            if flag is None:
                flag = internal[name] = name.startswith(INTERNAL_ROOTS)
            if not flag:
                return frame
            frame = frame.f_back
        return None

    def source_of(self, seq: int) -> str | None:
        """``"model.py:12  h = self.fc(x)"`` for the call that created node ``seq``. A line where the
        same function made nodes from two places (``torch.log(p) + torch.log(1 - p)``: two
        ``LogBackward0`` with the one line) says which call, with its column (Python 3.11+):
        ``"loss.py:9:35  return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()  ← torch.log(1 - p)"``."""
        i = bisect.bisect_right(self._starts, seq) - 1
        if i < 0 or seq >= self._ends[i]:
            return None
        where = self._where[i]
        hit = self._text.get(where)
        if hit is None:  # a model's forward creates many nodes on each of its lines
            filename, line, code, lasti, func = where
            text = linecache.getline(filename, line)
            place = f"{short_path(filename)}:{line}"
            call = None
            if code is not None and text.strip() and len(self._sites_of(filename, line, func)) > 1:
                call = call_at(code, lasti, line, text)
            if call is not None:
                column, what = call
                hit = f"{place}:{column}  {text.strip()}  ← {what}"
            else:
                hit = f"{place}  {text.strip()}" if text.strip() else place
            self._text[where] = hit
        return hit

    def _sites_of(self, filename: str, line: int, func: Any) -> set[tuple[Any, int]]:
        if self._sites_made != self._made:
            self._sites.clear()
            for f, n, code, lasti, fn in self._where:
                self._sites.setdefault((f, n, op_name(fn)), set()).add((code, lasti))
            self._sites_made = self._made
        return self._sites.get((filename, line, op_name(func)), set())

    def reset(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._where.clear()
        self._text.clear()  # the file may have changed since (a notebook cell re-run)
        self._sites.clear()
        self._made += 1


# where a call that made nodes came from: file, line, code object, its instruction (``f_lasti``; -1
# for a call made from inside torch, as a module's) and the torch function called; code is None
# (lasti -1, func None) for a live step's line that called the model
_Call = tuple[str, int, Any, int, Any]
CALL_TEXT = 60  # characters of a call's text shown beside its line at most


_MODULE_FILE = torch.nn.modules.module.__file__


def _no_module_between(caller: FrameType, frame: FrameType) -> bool:
    """Whether no ``nn.Module`` call lies between the user's ``frame`` and the ``caller`` of the
    mode: the line called the torch function itself (``torch.log``, ``F.mse_loss``)."""
    f: FrameType | None = caller
    while f is not None and f is not frame:
        if f.f_code.co_filename == _MODULE_FILE:
            return False
        f = f.f_back
    return True


def op_name(func: Any) -> str:
    """The op a torch function runs, whichever way it was called: ``torch.log`` and ``Tensor.log``
    both make a ``LogBackward0`` (so do ``torch.add``, ``x + y`` and ``x.add_``), and two of them on
    one line are told apart by their columns.

    >>> op_name(torch.log) == op_name(torch.Tensor.log), op_name(torch.Tensor.__add__), op_name(torch.Tensor.add_)
    (True, 'add', 'add')
    """
    return str(getattr(func, "__name__", "") or func).strip("_")


def call_at(code: Any, lasti: int, line: int, text: str) -> tuple[int, str] | None:
    """(column, text) of the call expression running at instruction ``lasti`` of ``code`` on ``line``
    (whose source is ``text``): Python 3.11+ records each instruction's span (``co_positions``), in
    UTF-8 bytes; None where it does not (3.10) or the span is not on that line."""
    positions = getattr(code, "co_positions", None)
    if positions is None or lasti < 0:
        return None
    try:
        start, end, col, end_col = next(itertools.islice(positions(), lasti // 2, None))
    except StopIteration:
        return None
    if start != line or col is None:
        return None
    raw = text.rstrip("\n").encode()
    what = raw[col : end_col if end == line and end_col is not None else len(raw)].decode(errors="replace")
    if not what.strip():
        return None
    if end != line:
        what += " …"
    if len(what) > CALL_TEXT:
        what = what[: CALL_TEXT - 1] + "…"
    return len(raw[:col].decode(errors="replace")) + 1, what


def _leave_mode_stack(mode: TorchFunctionMode) -> None:
    """Pop ``mode`` off the torch-function mode stack. A mode entered above it and never left (user code
    in a cell that entered one by hand) stays: the modes above are popped and pushed back, rather than
    popping the top one, whatever it is, and leaving ``mode`` on the stack for good."""
    above = []
    for _ in range(_stack_depth()):
        top = _pop_mode()  # type: ignore[no-untyped-call]
        if top is mode:
            break
        above.append(top)
    for other in reversed(above):  # (all of them when ``mode`` was not on the stack)
        _push_mode(other)  # type: ignore[no-untyped-call]


class _AtOnce(Rehoming):
    """A cell's warnings from inside ops, re-issued at once at the user's line (``warn_at_once``):
    those naming this file (raised by torch inside an op the tracker passed on), at the frame
    ``SourceTracker._user_frame`` finds; every other warning passes through (``filters.Rehoming``)."""

    def __init__(self, tracker: SourceTracker) -> None:
        super().__init__(__name__, __file__, self._user_line)
        self._tracker = tracker

    def _user_line(self, showing: FrameType, filename: str, lineno: int) -> FrameType | None:
        frame: FrameType | None = showing
        while frame is not None and frame.f_code.co_filename == _WARNINGS_FILE:
            frame = frame.f_back
        return self._tracker._user_frame(frame)


def user_line(frame: FrameType | None) -> tuple[str, int] | None:
    """(file, line) of the first frame from ``frame`` up outside torch and gradsight: the user's line
    that called into them (a live step's ``model(batch)``)."""
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(INTERNAL_ROOTS):
            return name, frame.f_lineno
        frame = frame.f_back
    return None


def short_path(filename: str) -> str:
    """How a source file reads in the inspector: its base name; ``In[4]`` for the code of IPython's
    cell 4 (as IPython's tracebacks name it: ``Cell In[4], line 12``), a ``%%gradsight`` cell's body
    included; ``cell`` for a Jupyter cell the running IPython does not know (ipykernel's
    ``/tmp/ipykernel_<pid>/<hash>.py``); ``cell Hbol`` for a marimo cell its kernel compiled from the
    editor's code (``/tmp/marimo_<pid>/__marimo__cell_Hbol_.py``, lines numbered within the cell, the
    text in ``linecache`` like ipykernel's). Under ``marimo run`` (and ``python notebook.py``) marimo
    compiles cells from the file's ``@app.cell`` functions: the notebook's own name and line show."""
    cell = _ipython_cell(filename)
    if cell is not None:
        return cell
    if filename.startswith("<"):
        return filename
    if "ipykernel" in filename:
        return "cell"
    base = os.path.basename(filename)
    marimo = _MARIMO_CELL.match(base)
    return f"cell {marimo.group(1)}" if marimo else base


# marimo's compiler.get_filename(cell_id, suffix): "__marimo__cell_<id>_<suffix>.py"; its own
# cell_id_from_filename reads the id with the same non-greedy match
_MARIMO_CELL = re.compile(r"__marimo__cell_(.+?)_\w*\.py$")


def _ipython_cell(filename: str) -> str | None:
    """``In[4]``: the execution count IPython compiled ``filename`` under (the running shell's cache of
    cells, ``%%gradsight`` bodies included); None outside IPython or for a file it did not compile."""
    ipython = sys.modules.get("IPython")
    if ipython is None:  # never imported: no shell to ask
        return None
    try:
        shell = ipython.get_ipython()
        compiler = getattr(shell, "compile", None)
        fmt = getattr(compiler, "format_code_name", None)
        if fmt is not None:
            named = fmt(filename)
            return str(named[1]) if named else None
        number = getattr(compiler, "_filename_map", {}).get(filename)
        return None if number is None else f"In[{number}]"
    except Exception:  # a shell that is not IPython's: names stay as they were
        return None
