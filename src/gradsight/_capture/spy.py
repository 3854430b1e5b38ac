"""Catch saved values just before a backward frees them (used while a %%gradsight cell runs).

Cells often call ``loss.backward()`` themselves, which frees every saved tensor (autograd-facts
§2.4). While the cell runs, ``torch.autograd.backward`` and ``torch.autograd.grad`` (which
``Tensor.backward`` calls) are wrapped: before the real call, the graph below the backward's
roots is walked and its saved values read — the tensors themselves are kept for lazy statistics,
within the memory budget. Only the last few backward calls are remembered, so a training loop in a
cell does not pile up every step's activations. The wrappers are removed when the cell ends, also
on error, and an error in gradsight's own reading never reaches the user's backward.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ..graph import TensorSummary
from . import saved as saved_mod
from .records import Presaved
from .summary import summarize
from .walk import walk

KEEP_CALLS = 4  # backward calls remembered (the graph shown is normally the last one's)


class BackwardSpy:
    """``presaved[node]``: what ``node`` had saved just before a backward freed it."""

    def __init__(self, budget_bytes: int) -> None:
        self.errors: list[str] = []
        self._budget = budget_bytes
        self._calls: deque[dict[Any, Presaved]] = deque(maxlen=KEEP_CALLS)

    @property
    def presaved(self) -> dict[Any, Presaved]:
        merged: dict[Any, Presaved] = {}
        for call in self._calls:
            merged.update(call)
        return merged

    @contextmanager
    def installed(self) -> Iterator[BackwardSpy]:
        autograd = torch.autograd
        original_backward, original_grad = autograd.backward, autograd.grad
        autograd.backward = self._wrap(original_backward, "tensors")
        autograd.grad = self._wrap(original_grad, "outputs")
        try:
            yield self
        finally:
            autograd.backward, autograd.grad = original_backward, original_grad

    def _wrap(self, fn: Callable[..., Any], first: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.record(args[0] if args else kwargs.get(first))
            return fn(*args, **kwargs)

        return wrapper

    def record(self, roots: object) -> None:
        """Read the saved values below ``roots``; never raises."""
        try:
            items = roots if isinstance(roots, (list, tuple)) else [roots]
            nodes = [n for n in (_node_of(t) for t in items) if n is not None]
            order, _, _ = walk(nodes)
            call: dict[Any, Presaved] = {}
            budget = [self._budget]
            for node in order:
                tensors: dict[str, torch.Tensor] = {}
                values = saved_mod.read_saved(node, _keeper(tensors, budget))
                call[node] = Presaved(values, tensors)
            self._calls.append(call)
        except Exception as e:  # gradsight's hooks never raise into the user's backward
            self.errors.append(f"could not read saved values before backward: {type(e).__name__}: {e}")


def _keeper(tensors: dict[str, torch.Tensor], budget: list[int]) -> Callable[[str, torch.Tensor], TensorSummary]:
    def keep(path: str, t: torch.Tensor) -> TensorSummary:
        cost = t.numel() * t.element_size()
        if cost <= budget[0]:
            budget[0] -= cost
            tensors[path] = t
            return summarize(t, stats=False)
        return summarize(t, stats=True)  # past the budget: statistics now, tensor dropped

    return keep


def _node_of(t: object) -> Any:
    if isinstance(t, torch.Tensor):
        return t.grad_fn
    return getattr(t, "node", None)  # torch.autograd.graph.GradientEdge
