"""Which module created each autograd node: sequence-number ranges from forward pre/post hooks.

Every node gets ``_sequence_nr()`` from a per-thread counter when it is created; a forward
pre-hook and post-hook record the counter's value around each module call, so the innermost range
that contains a node's number is its module (exact in research/autograd-facts.md §4.1). Ranges are
painted outermost first into a flat array, so a lookup is O(1) and nothing recurses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

_next_seq = torch._C._autograd._get_sequence_nr  # private, but the only way to read the counter
_graph_task_id = torch._C._current_graph_task_id


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
        self._handles: list[Any] = []
        self._lookup: list[str | None] | None = None
        self._base = 0
        if start:
            self.start()

    def start(self) -> None:
        """Begin recording (idempotent)."""
        if not self._handles:
            self._handles = [
                register_module_forward_pre_hook(self._pre),
                register_module_forward_hook(self._post, always_call=True),
            ]

    def stop(self) -> None:
        """Stop recording; the ranges recorded so far stay (idempotent)."""
        for h in self._handles:
            h.remove()
        self._handles = []

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
        # Outer calls start earlier and end later: sorting by (start, -end) paints parents first.
        for start, end, name in sorted(self.ranges, key=lambda r: (r[0], -r[1])):
            lookup[start - self._base : end - self._base] = [name] * (end - start)
        self._lookup = lookup
        return lookup

    def close(self) -> None:
        self.stop()
