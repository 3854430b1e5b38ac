"""Which leaves the backward of a ``%%gradsight`` cell that drew no graph gave no gradient (:func:`not_given`).

A cell that binds no tensor with a graph may still run a backward, through a graph an earlier cell
computed (``loss.backward()``: :data:`cell_notes.UNBOUND_BACKWARD`). gradsight draws nothing then, but
the leaves that backward reached got their ``.grad`` from it: no missing gradient. A leaf the cell uses
that it did not reach may hold a ``.grad`` as well, an earlier backward's: that leaf got nothing here,
and is missing. Which is which, two facts say. The spy's ``AccumulateGrad`` hooks (:func:`given`) tell
the leaves reached in the backward calls it still remembers, only the last few of a cell running many;
so a leaf is named only when its ``.grad`` is also the very tensor, at the very version, it held before
the cell ran (:class:`GradsBefore`): a backward that reached it wrote a new ``.grad`` or added to it.
When unsure (the cell changed that ``.grad`` some other way), no leaf is named. The named ones go in a
note of the graph (:data:`NOT_GIVEN`), which ``why`` reads back (:func:`not_given_in`): a graph holds no
tensors.

>>> w, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
>>> w.grad = b.grad = torch.ones(2)
>>> ns = {"w": w, "b": b, "loss": w.sum()}
>>> before = GradsBefore(ns, set(ns))
>>> w.grad = w.grad + 1  # the cell's backward
>>> names = sorted(not_given(ns, set(ns), [w], before))
>>> names, not_given_in(Graph(notes=(not_given_note(names) or "",)))
(['b'], {'b'})
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import torch

from ..graph import Graph
from .hooks import ACCUMULATE_GRAD
from .names import leaf_names_from_params
from .walk import short_name

NOT_GIVEN = "This cell's backward gave no gradient to"
_EACH = ". The .grad of each holds"


def given(nodes: Iterable[Any]) -> list[torch.Tensor]:
    """The leaves of the ``AccumulateGrad`` nodes among ``nodes`` (the spy's ``observed``: those a gradient
    reached in the backward calls it remembers). Never raises."""
    out = []
    for node in list(nodes):
        try:
            if short_name(node) == ACCUMULATE_GRAD:
                out.append(node.variable)
        except Exception:  # a node whose leaf is gone: it gave nothing to look at
            continue
    return out


def _named(ns: Mapping[str, Any], used: Collection[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """Each leaf of ``used`` names that requires grad: a tensor's name (``w``), a module's parameters
    (``model.0.weight``, named as ``CellTarget.leaves`` names them)."""
    for name in sorted(used):
        value = ns.get(name)
        if isinstance(value, torch.nn.Module):
            named = {f"{name}.{path}": p for p, path in leaf_names_from_params(value).items()}
        elif isinstance(value, torch.Tensor) and value.is_leaf:
            named = {name: value}
        else:
            continue
        yield from ((n, t) for n, t in named.items() if t.requires_grad)


class GradsBefore:
    """The ``.grad`` of each leaf of ``used`` names just before a cell ran (weakly, with its version: holding
    it would make autograd copy instead of adding in place), facts no trimming of the spy's calls forgets."""

    def __init__(self, ns: Mapping[str, Any], used: Collection[str]) -> None:
        self._grads: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[torch.Tensor], int]] = {}
        for _, t in _named(ns, used):
            grad = t.grad
            if grad is not None:
                self._grads[id(t)] = (weakref.ref(t), weakref.ref(grad), grad._version)

    def unchanged(self, leaf: torch.Tensor) -> bool:
        """Does ``leaf`` hold the very ``.grad`` it held before the cell, at the same version?"""
        seen = self._grads.get(id(leaf))
        grad = leaf.grad
        return seen is not None and seen[0]() is leaf and grad is not None and seen[1]() is grad and (
            grad._version == seen[2])  # fmt: skip


def not_given(ns: Mapping[str, Any], used: Collection[str], leaves: Collection[torch.Tensor],
              before: GradsBefore) -> dict[str, torch.Tensor]:  # fmt: skip
    """Name → each leaf a cell using ``used`` names (:func:`_named`) holds a ``.grad`` that none of ``leaves``
    (:func:`given`) is, and that is still the one it held before the cell (``before``): an earlier
    backward's."""
    ids = {id(t) for t in leaves}
    return {n: t for n, t in _named(ns, used) if id(t) not in ids and before.unchanged(t)}


def not_given_note(names: Collection[str]) -> str | None:
    """The note naming the leaves of :func:`not_given` (None: none)."""
    if not names:
        return None
    return (f"{NOT_GIVEN}: {', '.join(names)}{_EACH} what an earlier backward gave it (an earlier cell's, or one "
            "gradsight did not see), not this cell's: the backward the cell ran does not reach it from where it "
            "started, or backward(inputs=...) left it out.")  # fmt: skip


def not_given_in(graph: Graph) -> set[str]:
    """The names :func:`not_given_note` put in ``graph``'s notes."""
    for note in graph.notes:
        if note.startswith(NOT_GIVEN + ": ") and _EACH in note:
            return set(note[len(NOT_GIVEN) + 2 : note.index(_EACH)].split(", "))
    return set()
