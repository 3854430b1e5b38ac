"""How a run takes its gradients without touching the user's ``.grad`` fields.

:func:`differentiate` asks ``torch.autograd.grad`` for the leaves' gradients; a graph with a
reentrant checkpoint refuses that, so :func:`differentiate_by_backward` runs a plain backward into
emptied ``.grad`` fields and gives each its own tensor back, and :func:`hidden_note` says which
parameters got their gradients inside the region.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .summary import norm_of


def differentiate(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor | None]], leaves: list[torch.Tensor], retain: bool = False
) -> list[torch.Tensor | None]:
    roots = [r for r, _ in pairs]
    grad_outputs = [g for _, g in pairs]
    if not leaves:
        torch.autograd.backward(roots, grad_outputs, retain_graph=retain)
        return []
    return list(torch.autograd.grad(roots, leaves, grad_outputs, retain_graph=retain, allow_unused=True))


def differentiate_by_backward(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor | None]], leaves: list[torch.Tensor],
    params: list[torch.Tensor], hidden: dict[torch.Tensor, torch.Tensor], retain: bool = False,
) -> list[torch.Tensor | None]:  # fmt: skip
    """What :func:`differentiate` returns, for graphs with a reentrant checkpoint (its backward
    refuses ``torch.autograd.grad`` and ``backward(inputs=...)``): a plain backward into emptied
    ``.grad`` fields, read and then given back their own tensors — the leaves' and every parameter's
    of the modules the forward called and every tensor the code reaches by name (``params``: the
    region's own backward accumulates into what it uses, which is no leaf of the graph).
    Post-accumulate hooks (an optimizer run inside backward) are emptied meanwhile: this step must
    not update anything. ``hidden`` gets the gradients of the parameters that are no leaves of the
    graph (inside the region)."""
    touched = list({id(t): t for t in (*leaves, *params) if t.requires_grad}.values())
    kept = [(t, t.grad) for t in touched]
    hooks = [(d, dict(d)) for t in touched if (d := t._post_accumulate_grad_hooks)]
    try:
        for t in touched:
            t.grad = None
        for d, _ in hooks:
            d.clear()
        torch.autograd.backward([r for r, _ in pairs], [g for _, g in pairs], retain_graph=retain)
        graph_leaves = {id(t) for t in leaves}
        hidden.update({t: t.grad for t in params if id(t) not in graph_leaves and t.grad is not None})
        return [t.grad for t in leaves]
    finally:
        for d, items in hooks:
            d.update(items)
        for t, grad in kept:
            t.grad = grad


def hidden_note(hidden: dict[torch.Tensor, torch.Tensor], names: dict[torch.Tensor, str]) -> str:
    """What a graph says of the parameters a reentrant checkpoint region differentiates on its own."""
    parts = [f"{names.get(p, 'a parameter')} (gradient norm {norm_of(g) or 0:.4g})" for p, g in hidden.items()]
    return (
        f"A reentrant checkpoint (use_reentrant=True) is one opaque node: its backward re-runs the region and "
        f"differentiates it on its own, so these parameters get their gradients there and are no leaves of this "
        f"graph: {', '.join(parts[:12])}{', …' if len(parts) > 12 else ''}. "
        "Use checkpoint(..., use_reentrant=False) to see the region's nodes."
    )
