"""A live step captured in its forward and waiting for its backward: the graph's hooks, the
end-of-backward callback that finishes it (queued by the first hook of each backward that runs it,
until one ends), and the ``.grad`` history its leaves add to once it is finished."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import torch

from ..graph import Graph
from ..inspection import GradStep
from .hooks import GradRecorder
from .records import Collected
from .store import TensorStore
from .summary import norm_of

HISTORY = 50  # steps of .grad history kept per leaf


class LiveStep:
    def __init__(self, number: int, collected: Collected, store: TensorStore,
                 finish: Callable[[LiveStep], None], keep: Collection[int]) -> None:  # fmt: skip
        self.number = number
        self.collected = collected
        self.store = store
        self.recorder = GradRecorder(store, keep, on_first=self._queue_finish)
        self.leaves: list[tuple[int, torch.Tensor, str | None]] = []  # (node index, leaf, its name)
        self.finished = False  # (under the session's lock) its backward's end was handled
        self.started = 0.0  # when its forward began (time.monotonic)
        self.forward_time = 0.0  # its forward's duration
        self.backward_started = 0.0  # when its backward's first hook ran (a later cell may run it)
        self.call: tuple[Any, Any, Any, Any] | None = None  # (args, kwargs, rng state, user's line) of its forward
        self.outputs: list[tuple[int, int]] = []  # (root node index, output_nr) per output tensor
        self._finish = finish

    def _queue_finish(self) -> None:
        # Runs inside the first hook of this step's backward; the callback runs when it ends.
        self.backward_started = time.monotonic()
        torch.autograd.Variable._execution_engine.queue_callback(lambda: self._finish(self))

    def abandon(self) -> None:
        self.recorder.close()
        self.store.release()

    def record_history(self, history: dict[str, list[GradStep]], graph: Graph) -> None:
        """Each named leaf's ``.grad`` after this step, and the norm it received in it."""
        ids = self.collected.ids
        for i, leaf, name in self.leaves:
            if name is None:
                continue
            grad = leaf.grad
            norm = None if grad is None else norm_of(grad)  # sparse (embeddings), complex: norm_of copes
            steps = history.setdefault(name, [])
            received = graph.node(ids[i]).grad_norm if ids[i] in graph else None
            steps.append(GradStep(step=self.number, grad_norm=norm, received_norm=received))
            del steps[:-HISTORY]
