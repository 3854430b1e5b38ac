"""From the user's tensors to a graph, explaining tensors that have no graph at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..graph import Graph
from .observed import observed_gradients
from .records import Captured, CaptureOptions
from .text import with_article
from .walk import build, collect, gc_paused


def graph_of(tensors: Sequence[torch.Tensor], options: CaptureOptions | None = None,
             labels: Sequence[str] | None = None) -> Graph:  # fmt: skip
    """The backward graph of ``tensors``; tensors without ``grad_fn`` are explained, not errors.

    ``labels`` name the tensors in messages (variable names); default ``tensor 0``, ``tensor 1``…
    """
    return captured_of(tensors, options, labels).graph


def captured_of(tensors: Sequence[torch.Tensor], options: CaptureOptions | None = None,
                labels: Sequence[str] | None = None) -> Captured:  # fmt: skip
    """:func:`graph_of`, plus the tensors kept for lazy inspection (``options.store``)."""
    opts = options or CaptureOptions()
    names = list(labels) if labels is not None else [_default_label(i, len(tensors)) for i in range(len(tensors))]
    roots = [t.grad_fn for t in tensors if t.grad_fn is not None]
    reasons = [why_no_graph(t, names[i]) for i, t in enumerate(tensors) if t.grad_fn is None]
    if not roots:
        message = "\n".join(reasons) if reasons else "No tensors to show."
        return Captured(Graph(message=message), opts.store)
    return captured_below(roots, opts, reasons)


def captured_below(roots: Sequence[Any], opts: CaptureOptions, notes: Sequence[str] = ()) -> Captured:
    """The graph below the autograd nodes ``roots`` (a tensor's ``grad_fn``, or where a backward started
    whose tensor is gone: a cell's unbound loss), with ``notes`` added."""
    with gc_paused():
        collected, order = collect(roots, opts)
        grads = observed_gradients(order, opts) if opts.observed else None
        del order
        graph = build(collected, grads)
    if notes:
        graph = replace(graph, notes=graph.notes + tuple(notes))
    return Captured.of(graph, collected, opts.store)


def why_no_graph(t: torch.Tensor, name: str) -> str:
    """Why ``t`` has no ``grad_fn``, and what to do about it."""
    # The example needs a name that is code: "the tensor" (a debugger's own label) is not.
    var = name if name.isidentifier() else "x"
    if isinstance(t, torch.nn.Parameter):
        return (
            f"{name} is a model parameter (an nn.Parameter: a leaf), so it has no grad_fn: autograd "
            "records operations, not leaves. Debug a result computed from it, e.g. the model's loss: "
            "gradsight.debugger(model, inputs=batch, loss=...), or "
            f"gradsight.debugger(({var} * 2).sum())."
        )
    if t.requires_grad:
        return (
            f"{name} is a leaf tensor you created (requires_grad=True), so it has no grad_fn: "
            "autograd records operations, not leaves. Operations on it will build a graph — "
            f"debug their result instead, e.g. gradsight.debugger(({var} * 2).sum())."
        )
    if t.is_inference():
        return (
            f"{name} was created under torch.inference_mode(), so autograd recorded nothing for it. "
            "Compute it outside inference_mode from a tensor with requires_grad=True."
        )
    if not (t.dtype.is_floating_point or t.dtype.is_complex):
        return (
            f"{name} is {with_article(str(t.dtype).removeprefix('torch.'))} tensor, and only floating-point and "
            "complex tensors carry gradients: argmax, comparisons, rounding to integers and indices cut the graph. "
            "Differentiate a floating-point result instead (the loss before argmax, e.g. cross_entropy of "
            "the logits)."
        )
    return (
        f"{name} has requires_grad=False, so autograd recorded no graph for it: none of the tensors "
        "it was computed from required grad, it was computed under torch.no_grad(), or it was "
        "detached. Set requires_grad=True on an input (x.requires_grad_()) and compute it again "
        "outside no_grad."
    )


def _default_label(i: int, n: int) -> str:
    return "the tensor" if n == 1 else f"tensor {i}"
