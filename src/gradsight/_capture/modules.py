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

_next_seq = torch._C._autograd._get_sequence_nr  # private, but the only way to read the counter


class ModuleTracker:
    """Forward hooks on ``modules`` (name, module) pairs; :meth:`close` removes every one."""

    def __init__(self, modules: Iterable[tuple[str, torch.nn.Module]]) -> None:
        self._open: dict[int, list[int]] = {}  # id(module) -> stack of start numbers (re-entrant calls)
        self.ranges: list[tuple[int, int, str]] = []
        self._handles: list[Any] = []
        for name, module in modules:
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name), always_call=True))
        self._lookup: list[str | None] | None = None
        self._base = 0

    def _pre(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any) -> None:
            if torch._C._current_graph_task_id() == -1:  # not a checkpoint recompute during backward
                self._open.setdefault(id(module), []).append(_next_seq())

        return hook

    def _post(self, name: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            stack = self._open.get(id(module))
            if stack and torch._C._current_graph_task_id() == -1:
                self.ranges.append((stack.pop(), _next_seq(), name))
                self._lookup = None

        return hook

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
        for h in self._handles:
            h.remove()
        self._handles.clear()
