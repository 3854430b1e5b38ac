"""The parameters a ``%%gradsight`` cell's reentrant checkpoint region gave a gradient (:class:`HiddenGrads`).

``checkpoint(f, x, use_reentrant=True)`` is one opaque node of the cell's graph: its backward re-runs
``f`` and differentiates it in a backward of its own, so the parameters ``f`` uses are no leaves of
the graph, and no hook of the spy sees them. Yet they get a ``.grad``: they are not missing, and
``why()`` must not say they got nothing (a runnable debugger knows them from its own backward:
``differentiate.differentiate_by_backward``; a live step from their ``.grad``: ``live_step``). The
cell's leaves' ``.grad`` objects and version counters are read just before a run; after it, in a
graph with such a region, each leaf it does not draw whose ``.grad`` is new or was added to got it
there (``RunFacts.in_checkpoint``, which ``explain`` reads).

>>> from gradsight.graph import Node
>>> w = torch.ones(2, requires_grad=True)
>>> hidden = HiddenGrads()
>>> hidden.watch({"w": w})
>>> w.grad = torch.full((2,), 4.0)  # the region's backward gave it one
>>> hidden.read(Graph(nodes=(Node("n0", "CheckpointFunctionBackward", "opaque", opaque_kind="checkpoint"),)))
{'w': 5.656854152679443}
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping

import torch

from ..graph import Graph
from .summary import norm_of

# name, leaf, its .grad then (a weak reference; None: it had none), that .grad's version, a copy of it
_Before = tuple[str, torch.Tensor, "weakref.ref[torch.Tensor] | None", int, "torch.Tensor | None"]


class HiddenGrads:
    """:meth:`watch` just before a run, :meth:`read` after it (a re-run's, inside its guards: they put
    the user's ``.grad`` back); :meth:`of` gives a run's, for its facts, by its graph."""

    def __init__(self) -> None:
        self._before: list[_Before] | None = None
        self._last: tuple[object, dict[str, float]] | None = None  # (a graph's nodes, what read found)
        self.known: set[str] = set()  # names found inside a region so far

    def watch(self, leaves: Mapping[str, torch.Tensor | None], copied: Collection[str] = ()) -> None:
        """The ``.grad`` of each of ``leaves`` that requires grad, now; a copy of those named in ``copied``
        (a re-run's backward adds into the user's ``.grad``: its own gradient is the difference)."""
        before: list[_Before] = []
        with torch.no_grad(), torch._C.DisableTorchFunction():  # out of sight of a taint trace's mode
            for name, t in leaves.items():
                if t is None or not t.requires_grad:
                    continue
                grad = t.grad
                ref = None if grad is None else weakref.ref(grad)
                copied_now = grad is not None and name in copied and grad.layout == torch.strided
                copy = grad.detach().clone() if copied_now and grad is not None else None
                before.append((name, t, ref, -1 if grad is None else grad._version, copy))
        self._before = before

    def read(self, graph: Graph) -> dict[str, float]:
        """After the run that drew ``graph``: name → gradient norm of each watched leaf that ``graph`` has
        a reentrant checkpoint region and does not draw (by any of its names: a tied weight), whose ``.grad``
        is new or was added to since :meth:`watch` (nothing when no region, or nothing was watched)."""
        before, self._before = self._before or [], None
        found: dict[str, float] = {}
        if any(n.opaque_kind == "checkpoint" for n in graph.nodes):
            drawn = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
            drawn_ids = {id(t) for name, t, *_ in before if name in drawn}
            with torch.no_grad(), torch._C.DisableTorchFunction():
                for name, t, ref, version, copy in before:
                    grad = t.grad
                    if id(t) in drawn_ids or grad is None:
                        continue
                    same = ref is not None and ref() is grad
                    if same and grad._version == version:
                        continue
                    own = grad - copy if same and copy is not None and copy.shape == grad.shape else grad
                    found[name] = norm_of(own) or 0.0
        self.known |= set(found)
        self._last = (graph.nodes, found)
        return found

    def of(self, graph: Graph) -> dict[str, float]:
        """What :meth:`read` found for the run that drew ``graph`` (its nodes: notes added since do not
        matter), reading it now when the run was watched and not read yet (a cell's first run)."""
        if self._last is not None and self._last[0] is graph.nodes:
            return dict(self._last[1])
        return self.read(graph) if self._before is not None else {}
