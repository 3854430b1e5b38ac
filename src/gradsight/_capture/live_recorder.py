"""A live step's recorder (:class:`StepRecorder`): its hooks stay on across the step's backward
passes, and a leaf's gradient counts in a pass that ran the graph, or — once a pass kept the graph —
in a later pass that reaches only the leaves; and whether the pass ending now kept its graph
(:func:`graph_kept`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import torch

from .guard import own_run
from .hooks import GradRecorder
from .store import TensorStore

_graph_task_id = torch._C._current_graph_task_id  # -1 outside a backward pass on this thread

# Whether the graph task ending now keeps its graph (retain_graph / create_graph): torch's own
# aot_autograd reads it the same way. Without it (never seen on torch >= 2.10) a step ends with its
# first pass, as it did before steps had several.
_keep_graph: Callable[[], bool] | None = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


def graph_kept() -> bool:
    """Did the backward pass now ending keep the graph, so that another pass may run it? Never raises
    (it is read inside the engine's callback, in the user's backward)."""
    try:
        return _keep_graph is not None and bool(_keep_graph())
    except Exception:
        return False


class StepRecorder(GradRecorder):
    """A live step's recorder. A leaf is shared by every graph that uses it, so its gradient counts in
    a pass that ran a node of the step's graph first (see GradRecorder), and — once a pass of the step
    ended keeping the graph (``open``) — in any later pass but gradsight's own runs: a gradient
    penalty's second pass reaches a leaf the forward used directly (``x * self.scale``) only through
    the first pass's graph, a regularizer's ``backward()`` reaches the leaves alone; both go into
    ``.grad``."""

    def __init__(self, store: TensorStore, keep: Collection[int], on_first: Callable[[], None]) -> None:
        super().__init__(store, keep, on_first=on_first)
        self.open = False

    def _tensor_hook(self, pre_hook: Callable[[Sequence[torch.Tensor | None]], None]) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            task = _graph_task_id()
            if task == self._task:  # the pass ran a node of the graph
                pre_hook((grad,))
            elif self.open and not own_run():
                ran = self._task
                pre_hook((grad,))  # (never raises) records the leaf; its pass's first hook queues the pass's end
                self._task = ran  # a leaf is no node of the graph: ran_graph() tells them apart

        return hook

    def unlink(self) -> None:
        """Drop the end-of-pass callback (a bound method of the step, which holds this recorder):
        the cycle kept a finished step — its forward's inputs, leaves and store — alive until the
        cyclic GC ran."""
        self._on_first = None

    def ran_graph(self) -> bool:
        """Did the pass ending now (the engine's callback) run a node of the graph, not only leaves?"""
        return self._task == _graph_task_id()

    def snapshot(self) -> GradRecorder:
        """What the passes recorded, as a recorder of its own: a pass of another thread may still run
        a hook that passed its ``_closed`` check (it writes under the lock)."""
        with self._lock:
            copy = GradRecorder(self.store, self.keep)
            copy.meta, copy.grad_in, copy.grad_out = dict(self.meta), dict(self.grad_in), dict(self.grad_out)
            copy.executed, copy.derived, copy.errors = set(self.executed), dict(self.derived), list(self.errors)
        return copy
