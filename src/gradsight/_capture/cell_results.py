"""What a ``%%gradsight`` cell's graph is drawn from: its results (:func:`results`), the ones on top
(:func:`tops`), and where a backward on a loss it never bound started (:func:`backward_roots`).

The results are the tensors the cell bound (or rebound) to names, then the tensors with a graph it
bound inside containers — a dict or list of outputs, an HF-style ``ModelOutput`` or any dataclass, a
namedtuple (``outs['a']``, ``out.loss``, ``pair[0]``: named as the user reads them) — then its last
value. Containers are looked into a few levels and a few hundred entries deep (:data:`MAX_DEPTH`,
:data:`MAX_ITEMS`), through the builtins' own iteration (no user ``__iter__`` or ``items`` runs); their
tensors without a graph are the cell's data, not results.

A cell may also differentiate a loss it never bound: ``model(x).sum().backward()``,
``F.mse_loss(model(x), t).backward(); opt.step()``. When none of its results has a graph, the graph
shown is that backward's: the nodes the spy saw its latest call start from, where the cell made one of
them (its sequence number is within the numbers the cell's thread used: ``cell_forward.CellForward``).
A backward through a graph an earlier cell built stays undrawn, as before
(``cell_notes.UNBOUND_BACKWARD``): this cell computed nothing of it.

>>> w = torch.ones(2, requires_grad=True)
>>> [name for name, _ in inside({"a": [w * 2, 3], "b": w}, "outs")]
["outs['a'][0]"]
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from .walk import walk

LAST_VALUE = "the cell's last value"
MAX_DEPTH = 3  # out.hidden_states[3] is two containers in; a dict of lists of tuples three
MAX_ITEMS = 256  # entries of one container looked at (as namespace_guard.one_level_in)

UNBOUND_SHOWN = (
    "The cell bound no tensor with a graph to a name, so this is the graph its last backward ran through: a loss "
    "the cell computed without naming it. Bind what you want to see (loss = ...; loss.backward()) to choose what "
    "the graph shows."
)


def results(ns: Mapping[str, Any], before: Mapping[str, Any], value: Any) -> dict[str, torch.Tensor]:
    """Name → each tensor the cell bound or rebound (not underscored names), then each tensor with a graph
    inside a container it bound or rebound, then its last ``value`` (a tensor, those of a list or tuple,
    and those with a graph deeper in it). One tensor under several names keeps the first."""
    created: dict[str, torch.Tensor] = {}
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.Tensor) and before.get(name) is not v:
            created.setdefault(name, v)
    ids = {id(t) for t in created.values()}
    inner = [
        found
        for name, v in ns.items()
        if not name.startswith("_") and not isinstance(v, torch.Tensor) and before.get(name) is not v
        for found in inside(v, name)
    ]
    direct = [value] if isinstance(value, torch.Tensor) else [x for x in _items(value) if isinstance(x, torch.Tensor)]
    last = [(LAST_VALUE if i == 0 else f"{LAST_VALUE} [{i}]", t) for i, t in enumerate(direct)]
    for name, t in [*inner, *last, *inside(value, LAST_VALUE)]:
        if id(t) not in ids:
            ids.add(id(t))
            created[name] = t
    return created


def inside(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors with a graph that the container ``value`` holds (up to :data:`MAX_DEPTH` levels in),
    each with its path from ``name``, in order. Nothing for a tensor itself or any other object."""
    if isinstance(value, torch.Tensor):
        return
    stack: list[tuple[str, Any, int]] = [(name, value, 0)]
    seen: set[int] = set()
    while stack:
        path, v, depth = stack.pop()
        if isinstance(v, torch.Tensor):
            if v.grad_fn is not None:
                yield path, v
            continue
        if depth >= MAX_DEPTH or id(v) in seen:
            continue
        seen.add(id(v))
        stack.extend((path + key, child, depth + 1) for key, child in reversed(_entries(v)))


def _entries(v: Any) -> list[tuple[str, Any]]:
    """``(".loss", tensor)``, ``("['a']", …)``, ``("[0]", …)``: what a container holds, by how it is read
    back; [] for anything else, or a container that raises when read."""
    try:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):  # ModelOutput too (also a dict)
            return [(f".{f.name}", _field(v, f.name)) for f in dataclasses.fields(v)[:MAX_ITEMS]]
        fields = getattr(type(v), "_fields", None) if isinstance(v, tuple) else None
        if isinstance(fields, tuple):  # a namedtuple
            return [(f".{f}", x) for f, x in zip(fields, _items(v), strict=False)]
        if isinstance(v, dict):
            pairs = itertools.islice(dict.items(v), MAX_ITEMS)
            return [(f"[{k!r}]", x) for k, x in pairs if type(k) in (str, int)]  # keys whose repr is the user's
        return [(f"[{i}]", x) for i, x in enumerate(_items(v))]
    except Exception:  # a user's container that raises when read: none of its tensors
        return []


def _items(v: Any) -> list[Any]:
    """The first :data:`MAX_ITEMS` entries of a list or tuple (subclasses by the builtin's iteration)."""
    if isinstance(v, list):
        return list(itertools.islice(list.__iter__(v), MAX_ITEMS))
    if isinstance(v, tuple):
        return list(itertools.islice(tuple.__iter__(v), MAX_ITEMS))
    return []


def _field(v: Any, name: str) -> Any:
    try:
        return getattr(v, name)
    except Exception:  # a field behind a property of the user's that raises
        return None


def held(ns: Mapping[str, Any], before: Mapping[str, Any]) -> Iterator[Any]:
    """The nodes of the tensors ``ns`` holds now, and of those with a graph inside the containers bound
    since ``before`` (the spy keeps the backward calls that reach them: ``out.loss.backward()`` before
    scratch backward calls still shows the loss's)."""
    for name, v in list(ns.items()):
        if isinstance(v, torch.Tensor):
            yield v.grad_fn
        elif not name.startswith("_") and before.get(name) is not v:
            yield from (t.grad_fn for _, t in inside(v, name))


def tops(created: Mapping[str, torch.Tensor]) -> tuple[list[str], list[torch.Tensor]]:
    """The results no other result depends on, in order (those without a graph too, when none has one):
    one walk from the nodes just below the results' own finds every result some other one reaches."""
    nodes = {t.grad_fn for t in created.values() if t.grad_fn is not None}
    children = [c for node in nodes for c, _ in node.next_functions if c is not None]
    below = {m for m in walk(children)[0] if m in nodes}
    names, tensors, seen = [], [], set()
    for n, t in created.items():
        node = t.grad_fn
        if node is None and nodes:
            continue  # a cell that built a graph: tensors without one are inputs, not results
        if node is not None and (node in below or node in seen):
            continue
        seen.add(node)
        names.append(n)
        tensors.append(t)
    return names, tensors


def backward_roots(calls: Iterable[tuple[Any, ...]], first: int, end: int) -> tuple[Any, ...]:
    """The nodes the latest of ``calls`` (each backward call's roots, oldest first: ``BackwardSpy.roots``)
    started from, where the cell made one of them (its sequence number in ``[first, end)``, the cell's
    range on its thread); () when every call started in a graph made before the cell."""
    for roots in reversed(list(calls)):
        if any(first <= _sequence_nr(n) < end for n in roots):
            return tuple(roots)
    return ()


def _sequence_nr(node: Any) -> int:
    try:
        return int(node._sequence_nr())
    except Exception:  # not an autograd node (a GradientEdge's stand-in): no creation order
        return -1
