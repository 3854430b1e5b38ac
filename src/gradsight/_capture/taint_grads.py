"""A gradient taken inside a traced forward (taint.py): ``torch.autograd.grad(out, x, create_graph=True)``
in a gradient penalty, a MAML inner step, a Hessian-vector product. What it returns is no function
of its arguments' values but of the derivative's: followed values that drop out when differentiating
(a bias added last, any additive term: its derivative is a constant) are not in it, though they are
in ``out``. Autograd knows which are: the gradient's own graph (``create_graph=True``) reaches the
nodes of exactly the tensors it was computed from (``torch.autograd.grad(loss, bias,
allow_unused=True)`` is None for the others). So a returned gradient carries a followed value only
where its graph reaches that value's node, or the leaf's ``AccumulateGrad`` (:func:`depends`).

>>> x = torch.ones(2, requires_grad=True)
>>> bias = torch.ones(2, requires_grad=True)
>>> g, = torch.autograd.grad(((x * x) + bias).sum(), x, create_graph=True)
>>> depends([g], {id(bias): bias}), depends([g], {id(x): x})
([False], [True])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def is_grad(func: Any) -> bool:
    """Whether ``func`` is ``torch.autograd.grad`` (or a cell spy's wrapper of it, which keeps its name)."""
    return getattr(func, "__name__", "") == "grad" and getattr(func, "__module__", "") == "torch.autograd"


def depends(outs: Sequence[torch.Tensor], followed: Mapping[int, torch.Tensor]) -> list[bool]:
    """For each gradient in ``outs``: does its graph reach a ``followed`` tensor that has a graph (its node,
    or a leaf's ``AccumulateGrad``)? (Values followed without one, cut before, are in no graph: the caller
    asks only when every followed value the gradient was taken of still had its graph.) The gradients of
    one call share most of their graph (a penalty over every parameter): one walk answers for all, each
    node looked at once, so the cost is the graph's size, not that times the number of gradients."""
    targets: set[Any] = set()
    leaves: set[int] = set()
    for t in followed.values():
        if t.requires_grad and t.grad_fn is not None:
            targets.add(t.grad_fn)
        elif t.requires_grad:
            leaves.add(id(t))
    known: dict[Any, bool] = {}  # node -> whether it reaches a followed value
    # create_graph=False (no grad_fn): the caller names its cut as any lost requires_grad
    return [True if g.grad_fn is None else _reaches(g.grad_fn, targets, leaves, known) for g in outs]


def _reaches(root: Any, targets: set[Any], leaves: set[int], known: dict[Any, bool]) -> bool:
    """Whether ``root`` reaches a node in ``targets`` or the ``AccumulateGrad`` of a leaf in ``leaves``;
    ``known`` holds the answer of every node already walked (iteratively, children first: graphs are deep)."""
    stack: list[tuple[Any, list[Any] | None]] = [(root, None)]  # (node, its children once walked)
    while stack:
        node, children = stack.pop()
        if children is not None:
            known[node] = any(known.get(c, False) for c in children)
        elif node not in known:
            variable = getattr(node, "variable", None)
            if node in targets or (isinstance(variable, torch.Tensor) and id(variable) in leaves):
                known[node] = True
                continue
            children = [f for f, _ in getattr(node, "next_functions", ()) if f is not None]
            stack.append((node, children))
            stack.extend((c, None) for c in children if c not in known)
    return known[root]
