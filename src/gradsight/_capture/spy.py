"""Catch saved values just before a backward frees them (used while a %%gradsight cell runs).

Cells often call ``loss.backward()`` themselves, which frees every saved tensor (autograd-facts
§2.4). While the cell runs, ``torch.autograd.backward`` and ``torch.autograd.grad`` (which
``Tensor.backward`` calls) are wrapped: before the real call, the graph below the backward's
roots is walked and its saved values summarized. The wrappers are removed when the cell ends,
also on error, and an error in gradsight's own reading never reaches the user's backward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ..graph import SavedValue
from . import saved as saved_mod
from .summary import summarize
from .walk import walk


class BackwardSpy:
    """Holds what was read before each backward: ``presaved[node] = {attr: value}``."""

    def __init__(self, stats: bool = True) -> None:
        self.presaved: dict[Any, dict[str, SavedValue]] = {}
        self.errors: list[str] = []
        self._stats = stats

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
            roots = args[0] if args else kwargs.get(first)
            self.record(roots)
            return fn(*args, **kwargs)

        return wrapper

    def record(self, roots: object) -> None:
        """Summarize the saved values below ``roots``; never raises."""
        try:
            items = roots if isinstance(roots, (list, tuple)) else [roots]
            nodes = [_node_of(t) for t in items]
            order, _, _ = walk([n for n in nodes if n is not None])
            for node in order:
                if node not in self.presaved:
                    self.presaved[node] = saved_mod.read_saved(node, self._summarize)
        except Exception as e:  # gradsight's hooks never raise into the user's backward
            self.errors.append(f"could not read saved values before backward: {type(e).__name__}: {e}")

    def _summarize(self, t: torch.Tensor) -> Any:
        return summarize(t, stats=self._stats)


def _node_of(t: object) -> Any:
    if isinstance(t, torch.Tensor):
        return t.grad_fn
    return getattr(t, "node", None)  # torch.autograd.graph.GradientEdge
