"""Which leaves the backward of a ``%%gradsight`` cell that drew no graph gave no gradient (:func:`not_given`).

A cell that binds no tensor with a graph may still run a backward, through a graph an earlier cell
computed (``loss.backward()``: :data:`cell_notes.UNBOUND_BACKWARD`). gradsight draws nothing then, but
the leaves that backward reached got their ``.grad`` from it: no missing gradient. A leaf the cell uses
that it did not reach may hold a ``.grad`` as well, an earlier backward's: that leaf got nothing here,
and is missing. Which is which, the spy says: the leaves whose ``AccumulateGrad`` hooks saw a gradient
during the cell's backward calls (:func:`given`). The others are named in a note of the graph
(:data:`NOT_GIVEN`), which ``why`` reads back (:func:`not_given_in`): a graph holds no tensors.

>>> w, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
>>> w.grad = b.grad = torch.ones(2)
>>> names = sorted(not_given({"w": w, "b": b, "loss": w.sum()}, {"w", "b", "loss"}, [w]))
>>> names, not_given_in(Graph(notes=(not_given_note(names) or "",)))
(['b'], {'b'})
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
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


def not_given(ns: Mapping[str, Any], used: Collection[str],
              leaves: Collection[torch.Tensor]) -> dict[str, torch.Tensor]:  # fmt: skip
    """Name → each leaf a cell using ``used`` names (``w``; a module's ``model.0.weight``, named as
    ``CellTarget.leaves`` names them) that requires grad and holds a ``.grad`` while none of ``leaves``
    (:func:`given`) is it: an earlier backward's."""
    ids = {id(t) for t in leaves}
    out: dict[str, torch.Tensor] = {}
    for name in sorted(used):
        value = ns.get(name)
        if isinstance(value, torch.nn.Module):
            named = {f"{name}.{path}": p for p, path in leaf_names_from_params(value).items()}
        elif isinstance(value, torch.Tensor) and value.is_leaf:
            named = {name: value}
        else:
            continue
        out.update((n, t) for n, t in named.items() if t.requires_grad and t.grad is not None and id(t) not in ids)
    return out


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
