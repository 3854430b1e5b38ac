"""``gradsight.debugger(...)``: check what the user passed, capture, and build the widget."""

from __future__ import annotations

from typing import Any

from .widget import Debugger

ACCEPTED = "gradsight.debugger() takes a tensor with a grad_fn (e.g. loss), or a list/tuple of tensors"


def debugger(target: Any, *, params: Any = None, inputs: Any = None, loss: Any = None) -> Debugger:
    """A :class:`Debugger` showing the backward graph of ``target``.

    ``target`` is a tensor (or a list/tuple of tensors): its ``grad_fn`` graph is shown, and
    ``params`` (an ``nn.Module`` or a name → tensor dict, as torchviz's ``make_dot(params=...)``)
    names the leaves::

        >>> import torch, gradsight
        >>> model = torch.nn.Linear(3, 1)
        >>> loss = model(torch.randn(4, 3)).pow(2).sum()
        >>> dbg = gradsight.debugger(loss, params=model)
        >>> sorted(n.leaf.name for n in dbg.graph.leaves)
        ['bias', 'weight']
    """
    import torch

    from ._capture.names import leaf_names_from_params
    from ._capture.tensors import graph_of
    from ._capture.walk import CaptureOptions

    tensors = _as_tensors(target, torch)
    if inputs is not None or loss is not None:
        raise TypeError(
            "inputs= and loss= make a runnable debugger of a model or function, which this version "
            "of gradsight cannot run yet; pass the loss tensor instead: "
            "gradsight.debugger(loss, params=model)"
        )
    options = CaptureOptions(leaf_names=leaf_names_from_params(params))
    return Debugger(graph_of(tensors, options))


def _as_tensors(target: Any, torch: Any) -> list[Any]:
    if isinstance(target, torch.Tensor):
        return [target]
    if isinstance(target, (list, tuple)) and target:
        bad = [type(t).__name__ for t in target if not isinstance(t, torch.Tensor)]
        if not bad:
            return list(target)
        raise TypeError(f"{ACCEPTED}; this {type(target).__name__} also holds {', '.join(sorted(set(bad)))}")
    if isinstance(target, torch.nn.Module) or callable(target):
        raise TypeError(
            f"{ACCEPTED}. Debugging a model or a function by running it is not available in this "
            "version yet: compute the loss yourself and pass it, e.g. "
            "gradsight.debugger(loss, params=model)"
        )
    raise TypeError(f"{ACCEPTED}; got {type(target).__name__}")
