"""Live step numbers count training steps — backward passes — not calls of the model
(:class:`Numbers`). A pass takes its number as it first reaches a forward of the model: a forward no
backward ever reaches (a DQN target network's ``model(s2).max(1)[0].detach()``, a validation forward
without ``no_grad``) is no step, and the calls of a siamese step's one pass are one step.

A forward live mode does not capture gets one pre-hook on each output's ``grad_fn`` (:func:`mark`,
one :class:`Mark` shared by them): it fires once, and goes with the graph. A captured step numbers
itself as its first pass begins (``LiveStep._queue_pass_end``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch

from .outputs import flatten_tensors

_graph_task_id = torch._C._current_graph_task_id  # -1 outside a backward pass on this thread; ids never repeat
PASSES_KEPT = 8  # the passes whose number is remembered (threads training at once interleave theirs)


class Numbers:
    """A live session's step numbers (``steps``: the last one given). Holds nothing but numbers: the
    hooks of a graph that outlives the session may hold it."""

    def __init__(self) -> None:
        self.steps = 0
        self._lock = threading.Lock()
        self._passes: dict[int, int] = {}  # (under _lock) the last passes' graph task ids -> their number

    def count(self, *, new: bool = False) -> int:
        """The number of the step of the backward pass running on this thread: a new one, unless this
        pass already took one at another call of the model (a siamese step's). ``new``: a step no pass
        reached (its backward raised above the model) takes a number of its own."""
        task = _graph_task_id()
        with self._lock:
            number = None if new or task == -1 else self._passes.get(task)
            if number is None:
                self.steps += 1
                number = self.steps
                if not new and task != -1:
                    self._passes[task] = number
                    if len(self._passes) > PASSES_KEPT:
                        del self._passes[next(iter(self._passes))]
            return number


class Mark:
    """The pre-hook on an uncaptured forward's outputs: the first pass that runs one of them takes a
    step number; later passes, and its other outputs in that pass, do nothing."""

    __slots__ = ("done", "numbers")

    def __init__(self, numbers: Numbers) -> None:
        self.numbers = numbers
        self.done = False

    def __call__(self, grad_outputs: Any) -> None:
        if self.done:
            return
        self.done = True
        # A step number is a courtesy: it never raises into the user's backward. Nor is a failure worth
        # an error in the view (count() only takes a lock and adds one).
        with contextlib.suppress(Exception):
            self.numbers.count()


def mark(output: Any, numbers: Numbers) -> None:
    """Number the step of the first backward pass that reaches ``output`` (a forward's result: a tensor
    or a structure of them). Outputs without a ``grad_fn`` need no backward."""
    if isinstance(output, torch.Tensor):
        fns = [] if output.grad_fn is None else [output.grad_fn]
    else:  # outputs that share a node (views of one result) hook it once
        fns = list(dict.fromkeys(t.grad_fn for t in flatten_tensors(output) if t.grad_fn is not None))
    if fns:
        hook = Mark(numbers)
        with contextlib.suppress(Exception):  # a node that takes no hook: its step goes unnumbered, unsaid
            for fn in fns:
                fn.register_prehook(hook)
