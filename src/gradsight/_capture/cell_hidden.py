"""The parameters a ``%%gradsight`` cell's reentrant checkpoint region gave a gradient (:class:`HiddenGrads`).

``checkpoint(f, x, use_reentrant=True)`` is one opaque node of the cell's graph: its backward re-runs
``f`` and differentiates it in a backward of its own, so the parameters ``f`` uses are no leaves of
the graph, and no hook of the spy sees them. Yet they get a ``.grad``: they are not missing, and
``why()`` must not say they got nothing (a runnable debugger knows them from its own backward:
``differentiate.differentiate_by_backward``; a live step from their ``.grad``: ``live_step``). The
cell's leaves' ``.grad`` objects and version counters are read just before a run; during it, the spy
hands over each backward call's nodes (:meth:`HiddenGrads.hook`), and each ``CheckpointFunctionBackward``
among them gets a pre-hook and a hook, which read those ``.grad`` again: a leaf whose ``.grad`` is new or
was added to between the two got it inside the region. Only those count (``RunFacts.in_checkpoint``,
which ``explain`` reads), not every leaf whose ``.grad`` changed in the cell: an unused layer's stale
``.grad`` that ``clip_grad_norm_`` rescaled, a tensor a second backward reached, never passed through one.

>>> import torch.utils.checkpoint as cp
>>> from gradsight.graph import Node
>>> from gradsight._capture.walk import walk
>>> w, unused = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
>>> hidden = HiddenGrads()
>>> hidden.watch({"w": w, "unused": unused})
>>> loss = cp.checkpoint(lambda h: h * w, torch.ones(2, requires_grad=True), use_reentrant=True).sum()
>>> hidden.hook(walk([loss.grad_fn])[0])  # what the spy does before the cell's backward call
>>> loss.backward()
>>> unused.grad = torch.ones(2)  # not inside the region
>>> hidden.unhook()
>>> hidden.read(Graph(nodes=(Node("n0", "CheckpointFunctionBackward", "opaque", opaque_kind="checkpoint"),)))
{'w': 1.4142135381698608}
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch

from ..graph import Graph
from .summary import norm_of
from .walk import short_name

_CHECKPOINT = "CheckpointFunctionBackward"  # a reentrant checkpoint's node (walk: opaque_kind "checkpoint")

# name, leaf, its .grad then (a weak reference; None: it had none), that .grad's version, a copy of it
_Before = tuple[str, torch.Tensor, "weakref.ref[torch.Tensor] | None", int, "torch.Tensor | None"]


class HiddenGrads:
    """:meth:`watch` just before a run, :meth:`hook` (the spy) before each of its backward calls and
    :meth:`unhook` at its end, :meth:`read` after it (a re-run's, inside its guards: they put the user's
    ``.grad`` back); :meth:`of` gives a run's, for its facts, by its graph."""

    def __init__(self) -> None:
        self._before: list[_Before] | None = None
        self._last: tuple[object, dict[str, float]] | None = None  # (a graph's nodes, what read found)
        self.known: set[str] = set()  # names found inside a region so far
        self._inside: set[int] = set()  # id of each watched leaf whose .grad a region's backward wrote
        self._hooks: dict[int, tuple[Any, list[Any]]] = {}  # id(node) -> the node, its hooks' handles

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
        self._inside = set()

    def hook(self, nodes: Sequence[Any]) -> None:
        """Hook each reentrant checkpoint node among ``nodes`` (a backward call's, about to run) not hooked
        yet, until :meth:`unhook`. Never raises: the spy calls it before the user's backward."""
        if not self._before:
            return
        try:
            for node in nodes:
                if id(node) not in self._hooks and short_name(node) == _CHECKPOINT:
                    self._hooks[id(node)] = (node, [])  # held: its id stays its own until unhook
                    self._hooks[id(node)][1].extend(self._region_hooks(node))
        except Exception:  # a node gone odd: its region's leaves stay unknown, hence not counted
            return

    def _region_hooks(self, node: Any) -> list[Any]:
        """A pre-hook reading the watched leaves' ``.grad`` (object, version) as the region's backward
        starts, a hook telling which changed by its end; neither raises into the user's backward."""
        leaves = list({id(t): t for _, t, *_ in self._before or []}.values())
        seen: list[tuple[torch.Tensor, weakref.ref[torch.Tensor] | None, int]] = []

        def started(_grad_outputs: Any) -> None:
            seen.clear()
            try:
                with torch._C.DisableTorchFunction():  # out of sight of a taint trace's mode
                    seen.extend((t, _ref(t.grad), _version(t.grad)) for t in leaves if id(t) not in self._inside)
            except Exception:  # unknown, hence not counted
                seen.clear()

        def ended(_grad_inputs: Any, _grad_outputs: Any) -> None:
            found = set()
            try:
                with torch._C.DisableTorchFunction():
                    for t, ref, version in seen:
                        grad = t.grad
                        if grad is not None and (ref is None or ref() is not grad or grad._version != version):
                            found.add(id(t))
                self._inside |= found
            except Exception:  # unknown, hence not counted
                seen.clear()
            seen.clear()

        return [node.register_prehook(started), node.register_hook(ended)]

    def unhook(self) -> None:
        """Take the hooks of :meth:`hook` off (the run ended)."""
        hooks, self._hooks = self._hooks, {}
        for _, handles in hooks.values():
            for handle in handles:
                handle.remove()

    def read(self, graph: Graph) -> dict[str, float]:
        """After the run that drew ``graph``: name → gradient norm of each watched leaf that ``graph`` has
        a reentrant checkpoint region and does not draw (by any of its names: a tied weight), whose ``.grad``
        a region's backward made new or added to (:meth:`hook`): its ``.grad`` less what it held at
        :meth:`watch` (nothing when no region, or nothing was watched)."""
        before, self._before = self._before or [], None
        found: dict[str, float] = {}
        if any(n.opaque_kind == "checkpoint" for n in graph.nodes):
            drawn = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
            drawn_ids = {id(t) for name, t, *_ in before if name in drawn}
            with torch.no_grad(), torch._C.DisableTorchFunction():
                for name, t, ref, version, copy in before:
                    grad = t.grad
                    if id(t) in drawn_ids or id(t) not in self._inside or grad is None:
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


def _ref(grad: torch.Tensor | None) -> weakref.ref[torch.Tensor] | None:
    """A weak reference to ``grad`` (holding it would make autograd copy instead of adding in place)."""
    return None if grad is None else weakref.ref(grad)


def _version(grad: torch.Tensor | None) -> int:
    return -1 if grad is None else grad._version
