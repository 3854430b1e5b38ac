"""What a ``%%gradsight`` cell's graph is drawn from: its results (:func:`results`), the ones on top
(:func:`tops`), and where a backward on a loss it never bound started (:func:`backward_roots`).

The results are the tensors the cell bound (or rebound) to names and its last value. Only when none of
them has a graph (the loss was never named) are the tensors with a graph inside the containers it bound
results too — a dict or list of outputs, an HF-style ``ModelOutput`` or any dataclass, a namedtuple
(``outs['a']``, ``out.loss``, ``pair[0]``: named as the user reads them): beside a bound ``loss``, the
``losses`` list a loop appends it to is a history to plot, not 300 more roots. A list whose last two
entries are separate graphs of the same kind is such a history even then: its last entry stands for it.
Containers are looked into a few levels, a few hundred entries and a few thousand values deep
(:data:`MAX_DEPTH`, :data:`MAX_ITEMS`, :data:`MAX_VISITS`), through the builtins' own iteration (no
user ``__iter__`` or ``items`` runs); one whose first entries are numbers or strings (token ids) is data
and not read on; their tensors without a graph are the cell's data, not results. The spy asks for the
nodes these reach at every backward call of a loop (:func:`held`): the same rules keep that cheap.

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
MAX_VISITS = 4096  # values looked at in all, for one container (results) or all of a cell's (held)
SNIFF = 8  # first entries that tell a container of data (all numbers or strings) from one of outputs
SCALARS = (int, float, bool, complex, str, bytes, type(None))

UNBOUND_SHOWN = (
    "The cell bound no tensor with a graph to a name, so this is the graph its last backward ran through: a loss "
    "the cell computed without naming it. Bind what you want to see (loss = ...; loss.backward()) to choose what "
    "the graph shows."
)


def results(ns: Mapping[str, Any], before: Mapping[str, Any], value: Any) -> dict[str, torch.Tensor]:
    """Name → each tensor the cell bound or rebound (not underscored names), then its last ``value`` (a
    tensor, those of a list or tuple). Containers are read only when none of these has a graph — the loss
    the user did not name (``out.loss``, ``outs['a']``): with ``loss`` bound, a ``losses`` list the loop
    appends it to is its history, not more roots. Then each tensor with a graph inside a container the
    cell bound or rebound, and deeper in its last value. One tensor under several names keeps the first."""
    created: dict[str, torch.Tensor] = {}
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.Tensor) and before.get(name) is not v:
            created.setdefault(name, v)
    ids = {id(t) for t in created.values()}
    last = [(LAST_VALUE, value)] if isinstance(value, torch.Tensor) else _direct(value)
    if any(t.grad_fn is not None for t in [*created.values(), *(t for _, t in last)]):
        found = last  # the user named what to show: containers add nothing
    else:
        inner = [
            found
            for name, v in ns.items()
            if not name.startswith("_") and not isinstance(v, torch.Tensor) and before.get(name) is not v
            for found in inside(v, name)
        ]
        found = [*inner, *last, *inside(value, LAST_VALUE)]
    for name, t in found:
        if id(t) not in ids:
            ids.add(id(t))
            created[name] = t
    return created


def _direct(value: Any) -> list[tuple[str, torch.Tensor]]:
    """The tensors of a last value that is a list or tuple, named by position (a loss history: its last)."""
    latest = _history_last(value)
    if latest is not None:
        return [(f"{LAST_VALUE} [{latest[0]}]", latest[1])]
    tensors = [x for x in _items(value) if isinstance(x, torch.Tensor)]
    return [(LAST_VALUE if i == 0 else f"{LAST_VALUE} [{i}]", t) for i, t in enumerate(tensors)]


def inside(value: Any, name: str, budget: list[int] | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors with a graph that the container ``value`` holds (up to :data:`MAX_DEPTH` levels in),
    each with its path from ``name``, in order. Nothing for a tensor itself or any other object. At most
    ``budget[0]`` values are looked at (:data:`MAX_VISITS` by default; what is spent is taken off it);
    a list that is a history of separate graphs (:func:`_history_last`) gives its last entry only."""
    if isinstance(value, torch.Tensor):
        return
    left = [MAX_VISITS] if budget is None else budget
    stack: list[tuple[str, Any, int]] = [(name, value, 0)]
    seen: set[int] = set()
    while stack and left[0] > 0:
        path, v, depth = stack.pop()
        left[0] -= 1
        if isinstance(v, torch.Tensor):
            if v.grad_fn is not None:
                yield path, v
            continue
        if depth >= MAX_DEPTH or id(v) in seen:
            continue
        seen.add(id(v))
        latest = _history_last(v)
        entries = [(f"[{latest[0]}]", latest[1])] if latest is not None else _entries(v)
        stack.extend((path + key, child, depth + 1) for key, child in reversed(entries))


def _history_last(v: Any) -> tuple[int, torch.Tensor] | None:
    """``(index, tensor)`` of the last entry of a list kept as a history (``losses.append(loss)`` in a
    loop): its last two entries are tensors with a graph of the same kind (node type, shape, dtype) whose
    graphs share no node but leaves — the same step run again, one graph each. None for any other value
    (``[head(h) for head in heads]`` share ``h``'s graph: results each)."""
    if not isinstance(v, list) or list.__len__(v) < 2:
        return None
    try:
        prev, last = list.__getitem__(v, -2), list.__getitem__(v, -1)
    except Exception:  # emptied by another thread meanwhile
        return None
    if not (isinstance(prev, torch.Tensor) and isinstance(last, torch.Tensor)):
        return None
    a, b = prev.grad_fn, last.grad_fn
    if a is None or b is None or type(a) is not type(b) or (prev.shape, prev.dtype) != (last.shape, last.dtype):
        return None
    interior = {n for n in walk([a])[0] if n.next_functions}
    if any(n in interior for n in walk([b])[0] if n.next_functions):
        return None
    return list.__len__(v) - 1, last


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
            if _scalars(itertools.islice(dict.values(v), SNIFF)):
                return []
            pairs = itertools.islice(dict.items(v), MAX_ITEMS)
            return [(f"[{k!r}]", x) for k, x in pairs if type(k) in (str, int)]  # keys whose repr is the user's
        if isinstance(v, (list, tuple)) and _scalars(_items(v, SNIFF)):
            return []
        return [(f"[{i}]", x) for i, x in enumerate(_items(v))]
    except Exception:  # a user's container that raises when read: none of its tensors
        return []


def _items(v: Any, most: int = MAX_ITEMS) -> list[Any]:
    """The first ``most`` entries of a list or tuple (subclasses by the builtin's iteration)."""
    if isinstance(v, list):
        return list(itertools.islice(list.__iter__(v), most))
    if isinstance(v, tuple):
        return list(itertools.islice(tuple.__iter__(v), most))
    return []


def _scalars(first: Iterable[Any]) -> bool:
    """Are these first entries of a container all plain numbers or strings? Then it is data (token ids,
    a list of floats), not outputs: it is not read further."""
    seen = list(first)
    return bool(seen) and all(type(x) in SCALARS for x in seen)


def _field(v: Any, name: str) -> Any:
    try:
        return getattr(v, name)
    except Exception:  # a field behind a property of the user's that raises
        return None


def held(ns: Mapping[str, Any], before: Mapping[str, Any]) -> Iterator[Any]:
    """The nodes of the tensors ``ns`` holds now, and of those with a graph inside the containers bound
    since ``before`` when the cell bound no tensor with a graph (as :func:`results` reads them: the spy
    keeps the backward calls that reach them, so ``out.loss.backward()`` before scratch backward calls
    still shows the loss's). Called at every backward call of a loop: the containers are looked into
    :data:`MAX_VISITS` values in all, data containers (a list of token ids) after a few entries."""
    bound = [(name, v) for name, v in list(ns.items()) if not name.startswith("_") and before.get(name) is not v]
    for v in list(ns.values()):
        if isinstance(v, torch.Tensor):
            yield v.grad_fn
    if any(isinstance(v, torch.Tensor) and v.grad_fn is not None for _, v in bound):
        return  # containers add no result (results): nor anything to keep
    budget = [MAX_VISITS]
    for name, v in bound:
        if not isinstance(v, torch.Tensor):
            yield from (t.grad_fn for _, t in inside(v, name, budget))


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
