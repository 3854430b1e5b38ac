"""The hooks of one backward call a %%gradsight cell makes (see spy.py), and what they recorded.

A :class:`~.hooks.GradRecorder` hooks every node of the call's graph for the length of the call —
the same recorder, and the same budget rule, as a runnable run's (``config.Options.keep_all_below``):
when the saved tensors the spy kept before the call and the call's gradients (one per node output,
read from autograd's input metadata, as ``Collected.gradient_bytes``) total at most
``options.keep_all_below``, every node's gradients are kept: those flowing into it (``grad_in``; never
the one reaching an ``AccumulateGrad``) and those it produced (``grad_out``, a post-hook). Above, only
the shapes and norms of the gradients flowing in, and no ``grad_out`` (a runnable run's big graph
shows none either until a node is inspected). The norms of what a node produced are taken after the
call, from the kept tensors: no kernel inside the user's backward beyond the recorder's own.

>>> import torch
>>> from gradsight._capture.walk import walk
>>> w = torch.ones(3, requires_grad=True)
>>> loss = (2 * w).sum()
>>> watch = Watch(walk([loss.grad_fn])[0], [])
>>> loss.backward()
>>> watch.close()
>>> _, produced = watch.results()
>>> [round(float(m[4]), 3) for m in produced[loss.grad_fn].metas]  # SumBackward0 passed ones(3) down
[1.732]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..config import options
from ..graph import TensorSummary
from .guard import version_of
from .hooks import ACCUMULATE_GRAD, GradMeta, GradRecorder, grad_meta
from .records import Observed, Presaved
from .store import TensorStore
from .walk import short_name


@dataclass
class Call:
    """One backward call: what its nodes had saved before it ran, and (once it ended) the gradients
    that flowed into them (``observed``) and those they produced (``produced``: kept nodes only);
    ``roots``: the nodes it started from (a cell's loss it bound to no name: ``cell_results``)."""

    presaved: dict[Any, Presaved]
    observed: dict[Any, Observed] | None = None
    produced: dict[Any, Observed] | None = None
    roots: tuple[Any, ...] = ()


class Watch:
    """Hooks on every node of one backward call (a ``GradRecorder``'s: closures hold the node's
    index, never the node). ``kept_bytes``: the saved tensors the spy kept before this call, which
    count in ``options.keep_all_below`` as a runnable run's do."""

    def __init__(self, order: list[Any], errors: list[str], kept_bytes: int = 0) -> None:
        self.nodes = order
        self.errors = errors
        self.accumulates = False  # a backward call (not autograd.grad): it adds to the leaves' .grad
        self.call = Call({})  # the spy's record of this call
        names = [short_name(n) for n in order]
        self.leaves = [name == ACCUMULATE_GRAD for name in names]
        fits = fits_below(order, self.leaves, options.keep_all_below - kept_bytes)
        self._store = TensorStore(options.keep_all_below, eager=False)  # references only, no statistics
        self._recorder = GradRecorder(self._store, range(len(order)) if fits else ())
        try:  # a leaf's hook goes on its tensor: it also fires for what torch.autograd.grad returns
            self._recorder.install(order, names)
        except BaseException:
            self.close()  # no hook outlives a watch that failed to start (or was interrupted)
            raise

    @property
    def metas(self) -> dict[int, tuple[GradMeta, ...]]:
        """Node index → what the hooks recorded of the gradients flowing into it (``grad_meta``)."""
        return self._recorder.meta

    def received(self, inputs: Any, grads: Any) -> None:
        """``torch.autograd.grad`` returns the leaves' gradients instead of running their nodes: a leaf
        whose tensor hook did not see its gradient (a leaf that stopped requiring grad) gets it here."""
        leaves = {id(n.variable): i for i, n in enumerate(self.nodes) if self.leaves[i]}
        items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        for t, g in zip(items, grads, strict=False):
            i = leaves.get(id(t))
            if i is not None and g is not None and i not in self.metas:
                self.metas[i] = (grad_meta(g),)
                self._recorder.executed.add(i)

    def close(self) -> None:
        """Take every hook off (again: a no-op)."""
        self._recorder.close()

    def results(self) -> tuple[dict[Any, Observed], dict[Any, Observed]]:
        """After the call: per node, the gradients that flowed into it and those it produced (kept
        nodes), each with the tensors kept. Reports the hooks' errors."""
        rec, store = self._recorder, self._store
        for e in rec.errors:
            if len(self.errors) < 20:
                self.errors.append(f"gradient hook: {e}")
        observed = {}
        for i, metas in list(rec.meta.items()):
            kept = tuple(store.get((i, f"grad-in:{k}")) for k in range(len(metas))) if i in rec.grad_in else None
            observed[self.nodes[i]] = Observed(metas, kept, _versions(kept))
        produced = {}
        with torch.no_grad():  # create_graph=True: gradients that require grad, their norms need no graph
            for i, summaries in list(rec.grad_out.items()):
                tensors = tuple(store.get((i, f"grad-out:{k}")) for k in range(len(summaries)))
                metas = tuple(_meta(t, s) for t, s in zip(tensors, summaries, strict=True))
                produced[self.nodes[i]] = Observed(metas, tensors, _versions(tensors))
        return observed, produced


def _versions(tensors: tuple[torch.Tensor | None, ...] | None) -> tuple[int | None, ...] | None:
    """The kept gradients' version counters as the call left them: ``torch.autograd.grad`` returns a
    leaf's gradient itself (the tensor its consumer produced), and what the user does to it in place
    after the call is no gradient that flowed (``observed`` takes statistics only of those
    unchanged since)."""
    if tensors is None:
        return None
    return tuple(None if t is None else version_of(t) for t in tensors)


def _meta(t: torch.Tensor | None, s: TensorSummary | None) -> GradMeta:
    """A produced gradient as a hook records one: from the kept tensor, or (past the store's budget:
    a node's gradients passed to several consumers are each kept) its shape without a norm."""
    if s is None:
        return None
    if t is not None:
        return grad_meta(t)
    return (s.shape, s.dtype, s.device, s.numel, None, s.layout)


def fits_below(order: list[Any], leaves: list[bool], room: int) -> bool:
    """Do the gradients of ``order``'s nodes (one per node output, ``leaves[i]``: an ``AccumulateGrad``,
    its leaf's size) total at most ``room`` bytes? A node whose metadata cannot be read counts 0, as in
    ``Collected.gradient_bytes`` (a nested tensor's ragged dim: 1); stops at the first byte past ``room``."""
    total = 0
    for node, leaf in zip(order, leaves, strict=True):
        total += _output_bytes(node, leaf)
        if total > room:
            return False
    return True


def _output_bytes(node: Any, leaf: bool) -> int:
    try:
        if leaf:
            t = node.variable
            return int(t.numel() * t.element_size())
        return sum(
            math.prod(d if type(d) is int else 1 for d in m.shape) * m.dtype.itemsize for m in node._input_metadata
        )
    except Exception:  # _input_metadata is private API, a leaf freed meanwhile: unknown, as walk._outputs
        return 0
