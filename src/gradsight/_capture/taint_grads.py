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
    asks only when every followed value the gradient was taken of still had its graph.)"""
    out: list[bool] = []
    for g in outs:
        if g.grad_fn is None:  # create_graph=False: the caller names its cut as any lost requires_grad
            out.append(True)
            continue
        nodes, leaves = _reach(g.grad_fn)
        out.append(any(t.requires_grad and (t.grad_fn in nodes if t.grad_fn is not None else id(t) in leaves)
                       for t in followed.values()))  # fmt: skip
    return out


def _reach(root: Any) -> tuple[set[Any], set[int]]:
    """The nodes reachable from ``root`` (iteratively: graphs are deep), and the ids of the leaves whose
    ``AccumulateGrad`` nodes are among them."""
    nodes: set[Any] = set()
    leaves: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or node in nodes:
            continue
        nodes.add(node)
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            leaves.add(id(variable))
        stack.extend(f for f, _ in getattr(node, "next_functions", ()))
    return nodes, leaves
