"""What changed between two runs of the same code: nodes, leaves' gradients, loss, saved bytes.

Node ids are stable across runs of the same code, but a what-if changes the graph the code builds,
and an op's id counts same-named ops of its module: freezing ``w`` in ``w * 2 + v * 3`` takes the
first ``MulBackward0`` away and the second becomes ``#0``. So nodes are matched by what they compute
first — op, module, leaf and everything below them (:func:`_signatures`) — and only the rest by id
(the ops above a removed branch: same op, other inputs). Torch-free.

>>> from gradsight.graph import Graph
>>> diff(Graph(), Graph()).added
()
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from .graph import Graph, Node, TensorSummary


@dataclass(frozen=True)
class RemovedNode:
    id: str
    name: str
    kind: str
    module: str | None


@dataclass(frozen=True)
class NormChange:
    name: str
    before: float | None
    after: float | None


@dataclass(frozen=True)
class GraphDiff:
    before: int  # run indices in the debugger's history
    after: int
    added: tuple[str, ...] = ()
    removed: tuple[RemovedNode, ...] = ()
    gained_grad: tuple[str, ...] = ()  # leaves with a gradient now, not before
    lost_grad: tuple[str, ...] = ()
    loss_before: float | None = None
    loss_after: float | None = None
    grad_norms: tuple[NormChange, ...] = ()  # every leaf present in either run
    saved_bytes_before: int = 0
    saved_bytes_after: int = 0


def diff(before: Graph, after: Graph, before_index: int = 0, after_index: int = 1) -> GraphDiff:
    matched = _match(before, after)
    old_leaves, new_leaves = _leaf_grads(before), _leaf_grads(after)
    names = list(dict.fromkeys([*old_leaves, *new_leaves]))
    old_norms, new_norms = _leaf_norms(before), _leaf_norms(after)
    kept = set(matched.values())
    return GraphDiff(
        before=before_index,
        after=after_index,
        added=tuple(n.id for n in after.nodes if n.id not in kept),
        removed=tuple(RemovedNode(n.id, n.name, n.kind, n.module) for n in before.nodes if n.id not in matched),
        gained_grad=tuple(n for n in names if new_leaves.get(n, False) and not old_leaves.get(n, False)),
        lost_grad=tuple(n for n in names if old_leaves.get(n, False) and not new_leaves.get(n, False)),
        loss_before=before.run.loss,
        loss_after=after.run.loss,
        grad_norms=tuple(NormChange(n, old_norms.get(n), new_norms.get(n)) for n in names),
        saved_bytes_before=saved_bytes(before),
        saved_bytes_after=saved_bytes(after),
    )


def _match(before: Graph, after: Graph) -> dict[str, str]:
    """Old node id → new node id of the same op: same signature (in graph order among equals),
    then, of the rest, the same id and op name."""
    old_sigs, new_sigs = _signatures(before), _signatures(after)
    waiting: dict[int, deque[str]] = {}
    for n in after.nodes:
        waiting.setdefault(new_sigs[n.id], deque()).append(n.id)
    matched: dict[str, str] = {}
    for n in before.nodes:
        candidates = waiting.get(old_sigs[n.id])
        if candidates:
            matched[n.id] = candidates.popleft()  # many equal branches: no list.pop(0), quadratic
    kept = set(matched.values())
    names = {n.id: n.name for n in after.nodes if n.id not in kept}
    for n in before.nodes:
        if n.id not in matched and names.get(n.id) == n.name:
            matched[n.id] = n.id
            del names[n.id]
    return matched


def _signatures(graph: Graph) -> dict[str, int]:
    """A hash per node of its op, module, leaf name and its inputs' signatures (edge by edge):
    equal when two nodes compute the same thing from the same leaves. Nodes come roots first, so
    inputs are done first in reverse; an edge to a node not in the graph counts as a cut."""
    sigs: dict[str, int] = {}
    for n in reversed(graph.nodes):
        inputs = tuple((sigs.get(child, 0) if child is not None else None, nr) for child, nr in n.next)
        sigs[n.id] = hash((n.kind, n.name, n.module, n.leaf.name if n.leaf is not None else None, inputs))
    return sigs


def saved_bytes(graph: Graph) -> int:
    """Bytes of the tensors autograd saved for backward (each tensor counted once per node)."""
    total = 0
    for node in graph.nodes:
        for value in node.saved.values():
            stack = [value]
            while stack:
                v = stack.pop()
                if isinstance(v, TensorSummary):
                    total += v.nbytes
                elif isinstance(v, tuple):
                    stack.extend(v)
    return total


def _leaf_grads(graph: Graph) -> dict[str, bool]:
    """Named leaves of the graph and whether a gradient reached them in this run."""
    return {n.leaf.name: _got_grad(n) for n in graph.nodes if n.leaf is not None and n.leaf.name}


def _got_grad(node: Node) -> bool:
    if node.executed is None:  # no backward observed (tensor debugger): being in the graph is the fact
        return True
    return bool(node.executed) and any(g is not None for g in node.grad_in)


def _leaf_norms(graph: Graph) -> dict[str, float | None]:
    """Each named leaf's gradient norm, None when it got none; NaN or inf when its gradient is not
    finite: its node's ``grad_norm``, or where that is None (the gradient's statistics were taken,
    :attr:`Node.nonfinite_gradient`) NaN if it held a NaN, else inf."""
    out: dict[str, float | None] = {}
    for n in graph.nodes:
        if n.leaf is not None and n.leaf.name:
            norm = n.grad_norm
            if norm is None and n.nonfinite_gradient:
                grads = [g for g in n.grad_in if g is not None]
                bad = [g.norm for g in grads if g.norm is not None and not math.isfinite(g.norm)]
                norm = bad[0] if bad else math.nan if any(g.nan_count for g in grads) else math.inf
            out.setdefault(n.leaf.name, norm)
    return out
