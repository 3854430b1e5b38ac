"""Hooks on every node of one graph, recording the gradients that flow during backward.

Rules from research/autograd-facts.md §6: every hook returns None and catches everything (an
exception would abort the user's backward); closures capture the node's index, never the node (a
node → hook → closure → node cycle keeps activations alive); the gradient reaching an
``AccumulateGrad`` is not held (that forces a copy of every parameter gradient): only its norm is
taken. Gradients go to the :class:`~.store.TensorStore`, which keeps references within its budget.
All handles are owned here and removed by :meth:`GradRecorder.close`, also on error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..graph import TensorSummary
from .store import TensorStore

ACCUMULATE_GRAD = "AccumulateGrad"


class GradRecorder:
    """Install with :meth:`install`; read ``grad_in``, ``grad_out``, ``executed``, ``errors``."""

    def __init__(self, store: TensorStore, on_first: Callable[[], None] | None = None) -> None:
        self.store = store
        self._on_first = on_first  # called once, inside the first hook that fires
        self.grad_in: dict[int, tuple[TensorSummary | None, ...]] = {}
        self.grad_out: dict[int, tuple[TensorSummary | None, ...]] = {}
        self.leaf_received: dict[int, float | None] = {}  # norm of the gradient reaching a leaf
        self.executed: set[int] = set()
        self.errors: list[str] = []
        self._handles: list[Any] = []
        self._lock = threading.Lock()  # two backward calls may interleave hooks (pitfall 9)
        self._closed = False

    def install(self, order: Sequence[Any], names: Sequence[str]) -> None:
        for i, node in enumerate(order):
            if names[i] == ACCUMULATE_GRAD:
                self._handles.append(node.register_prehook(self._leaf_hook(i)))
            else:
                self._handles.append(node.register_prehook(self._pre_hook(i)))
                self._handles.append(node.register_hook(self._post_hook(i)))

    def close(self) -> None:
        self._closed = True
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _first(self) -> None:
        fn, self._on_first = self._on_first, None
        if fn is not None:
            fn()

    def _pre_hook(self, i: int) -> Any:
        def hook(grad_outputs: Sequence[torch.Tensor | None]) -> None:
            if self._closed:
                return
            try:
                if self._on_first is not None:
                    self._first()
                with self._lock:
                    self.executed.add(i)
                    self.grad_in[i] = self._keep(i, "grad-in", grad_outputs)
            except Exception as e:
                self._error(i, e)
            return

        return hook

    def _post_hook(self, i: int) -> Any:
        def hook(grad_inputs: Sequence[torch.Tensor | None], grad_outputs: Sequence[torch.Tensor | None]) -> None:
            if self._closed:
                return
            try:
                with self._lock:
                    self.grad_out[i] = self._keep(i, "grad-out", grad_inputs)
            except Exception as e:
                self._error(i, e)
            return

        return hook

    def _leaf_hook(self, i: int) -> Any:
        def hook(grad_outputs: Sequence[torch.Tensor | None]) -> None:
            if self._closed:
                return
            try:
                if self._on_first is not None:
                    self._first()
                g = grad_outputs[0] if grad_outputs else None
                norm = None if g is None else float(torch.linalg.vector_norm(g.detach().float()))
                with self._lock:
                    self.executed.add(i)
                    self.leaf_received[i] = norm
            except Exception as e:
                self._error(i, e)
            return

        return hook

    def _keep(self, i: int, kind: str, grads: Sequence[torch.Tensor | None]) -> tuple[TensorSummary | None, ...]:
        return tuple(None if g is None else self.store.offer((i, f"{kind}:{k}"), g) for k, g in enumerate(grads))

    def _error(self, i: int, e: BaseException) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"node {i}: {type(e).__name__}: {e}")
