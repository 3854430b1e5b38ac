"""Which module created each autograd node: sequence-number ranges from forward pre/post hooks.

Every node gets ``_sequence_nr()`` from a per-thread counter when it is created; a forward
pre-hook and post-hook record the counter's value around each module call, so the innermost range
that contains a node's number is its module (exact in research/autograd-facts.md §4.1). Ranges are
painted outermost first into a flat array, so a lookup is O(1) and nothing recurses.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from .filters import add_filter, remove_filter

_next_seq = torch._C._autograd._get_sequence_nr  # private, but the only way to read the counter
_graph_task_id = torch._C._current_graph_task_id


def _is_compiling() -> Callable[[], bool]:
    fn = getattr(torch.compiler, "is_compiling", None)  # torch 2.3+
    if fn is None:
        fn = getattr(torch._dynamo, "is_compiling", None)
    return fn if fn is not None else (lambda: False)


# True while dynamo traces: gradsight's hooks and modes then step aside (see _SharedHooks)
compiling = _is_compiling()


def is_compiled(value: Any) -> bool:
    """A ``torch.compile``'d module or function. The source tracker is a torch-function mode, and
    dynamo guards on the mode stack: a run or live step with it would compile the model again — for
    a run another graph than the user's (its inputs in another order) — so debuggers of one track no
    source lines (a compiled region is one node anyway). ``sys.modules``: importing dynamo costs a
    second, and nothing is compiled before it is imported."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    if eval_frame is None:  # nothing was compiled in this process
        return False
    return (
        isinstance(value, eval_frame.OptimizedModule)
        or (callable(value) and hasattr(value, "_torchdynamo_orig_callable"))
        # model.compile(): compiled in place, the module's own call is the compiled one
        or (isinstance(value, torch.nn.Module) and getattr(value, "_compiled_call_impl", None) is not None)
    )


class ModuleTracker:
    """Records module ranges of ``modules`` (name, module) pairs while started.

    Two global module hooks (``register_module_forward_pre_hook``) instead of two hooks per module:
    starting and stopping costs the same for 10 modules or 10,000 (per-module registration was
    ~5 µs per module and every run paid it), and a stopped tracker costs the model's forward
    nothing. Modules outside ``modules`` are ignored; :meth:`close` removes both hooks.
    """

    def __init__(self, modules: Iterable[tuple[str, torch.nn.Module]], *, start: bool = True) -> None:
        pairs = list(modules)
        self._modules = [m for _, m in pairs]  # alive while tracked, so their id()s stay theirs
        self._names: dict[int, str] = {}
        for name, module in pairs:
            self._names.setdefault(id(module), name)
        self._open: dict[int, list[int]] = {}  # id(module) -> stack of start numbers (re-entrant calls)
        self.ranges: list[tuple[int, int, str]] = []
        self._lookup: list[str | None] | None = None
        self._base = 0
        if start:
            self.start()

    def start(self) -> None:
        """Begin recording (idempotent)."""
        SHARED_HOOKS.add(self)

    def stop(self) -> None:
        """Stop recording; the ranges recorded so far stay (idempotent)."""
        SHARED_HOOKS.discard(self)

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        key = id(module)
        if key in self._names and _graph_task_id() == -1:  # not a checkpoint recompute during backward
            self._open.setdefault(key, []).append(_next_seq())

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        key = id(module)
        stack = self._open.get(key)
        if stack and _graph_task_id() == -1:
            self.ranges.append((stack.pop(), _next_seq(), self._names[key]))
            self._lookup = None

    def reset(self) -> None:
        """Forget recorded ranges (a new step starts)."""
        self.ranges.clear()
        self._open.clear()
        self._lookup = None

    def module_of(self, seq: int) -> str | None:
        """The innermost module whose forward created the node with sequence number ``seq``."""
        lookup = self._lookup
        if lookup is None:
            lookup = self._paint()
        i = seq - self._base
        return (lookup[i] or None) if 0 <= i < len(lookup) else None  # "" is the root module itself

    def _paint(self) -> list[str | None]:
        if not self.ranges:
            self._lookup = []
            return self._lookup
        self._base = min(r[0] for r in self.ranges)
        lookup: list[str | None] = [None] * (max(r[1] for r in self.ranges) - self._base)
        # Outer calls start earlier and end later: sorting by (start, -end) paints parents first. A
        # wrapper whose forward only calls one submodule has the very same range; calls are recorded
        # when they end, inner first, so among equal ranges the later-recorded (outer) one goes first.
        order = sorted(range(len(self.ranges)), key=lambda i: (self.ranges[i][0], -self.ranges[i][1], -i))
        for start, end, name in (self.ranges[i] for i in order):
            lookup[start - self._base : end - self._base] = [name] * (end - start)
        self._lookup = lookup
        return lookup

    def close(self) -> None:
        self.stop()


# torch warns on every call of a torch.compile'd module while global module hooks exist; ours only
# read the sequence counter, so the warning ("hooks fire an extra time") would only alarm the user.
_COMPILE_WARNING = r"Using `torch\.compile\(module\)` when there are global hooks on modules"


class _SharedHooks:
    """The two global module hooks every started tracker shares.

    ``torch.compile`` guards on the keys of the global hook dicts and inlines the hooks: hooks
    registered afresh for each run or live step (new keys) made a compiled model recompile every
    time (and fall back to eager past the recompile limit), and hooks that read the sequence counter
    broke its graph into pieces. So the same two functions are inserted under the same two keys every
    time (a compiled model compiles once for "gradsight attached" and finds that entry again), and
    they do nothing while dynamo traces (a compiled region is one autograd node anyway).
    """

    def __init__(self) -> None:
        # ModuleTracker and guard.ModuleGuard: _pre/_post(module, ...). Replaced, never changed in place:
        # the hooks iterate it on other threads meanwhile (a live session's close() on the kernel's
        # thread while a training thread's forward runs).
        self.trackers: list[Any] = []
        self._handles: tuple[Any, Any] | None = None
        self._filter: Any = None
        self._lock = threading.Lock()  # add and discard from two threads: the hooks go in or out once

    def add(self, tracker: Any) -> None:
        with self._lock:
            if tracker not in self.trackers:
                self.trackers = [*self.trackers, tracker]
                if len(self.trackers) == 1:
                    self._install()

    def discard(self, tracker: Any) -> None:
        with self._lock:
            if tracker in self.trackers:
                self.trackers = [t for t in self.trackers if t is not tracker]
                if not self.trackers:
                    self._uninstall()

    def _install(self) -> None:
        if self._handles is None:
            self._handles = (
                register_module_forward_pre_hook(_pre),
                register_module_forward_hook(_post, always_call=True),
            )
        else:  # put them back under their first keys
            for handle, fn in zip(self._handles, (_pre, _post), strict=True):
                hooks = handle.hooks_dict_ref()
                if hooks is not None:
                    hooks[handle.id] = fn
                for ref in handle.extra_dict_ref:  # the always_call flag
                    extra = ref()
                    if extra is not None:
                        extra[handle.id] = True
        self._filter = add_filter("ignore", message=_COMPILE_WARNING, category=UserWarning)  # see filters.py

    def _uninstall(self) -> None:
        if self._handles is not None:
            for handle in self._handles:
                handle.remove()
        if self._filter is not None:
            remove_filter(self._filter)
        self._filter = None


def _pre(module: torch.nn.Module, args: Any) -> None:
    if compiling():
        return
    for tracker in SHARED_HOOKS.trackers:
        tracker._pre(module, args)


def _post(module: torch.nn.Module, args: Any, output: Any) -> None:
    if compiling():
        return
    for tracker in SHARED_HOOKS.trackers:
        tracker._post(module, args, output)


SHARED_HOOKS = _SharedHooks()
