"""Model outputs to tensors: tuples, lists, dicts, namedtuples, dataclasses, ``ModelOutput``s."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch.utils import _pytree


def flatten_tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor inside ``value``, in a deterministic order, without recursion."""
    out: list[torch.Tensor] = []
    stack: list[Any] = [value]
    seen: set[int] = set()
    while stack:
        v = stack.pop()
        if isinstance(v, torch.Tensor):
            out.append(v)
            continue
        if id(v) in seen:
            continue
        seen.add(id(v))
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            stack.extend(reversed([getattr(v, f.name) for f in dataclasses.fields(v)]))
        elif isinstance(v, Mapping):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, (list, tuple)):
            stack.extend(reversed(list(v)))
        else:
            leaves, _ = _pytree.tree_flatten(v)  # registered pytree nodes
            if len(leaves) > 1 or (leaves and leaves[0] is not v):
                stack.extend(reversed(leaves))
    return out


def loss_output(value: Any) -> torch.Tensor | None:
    """The loss a model returned beside its other outputs, if it did: a ``loss`` entry or attribute
    (Hugging Face's ``ModelOutput`` when ``labels`` are given), else the only scalar tensor that
    requires grad among several outputs. None when there is no such single loss."""
    named = value.get("loss") if isinstance(value, Mapping) else getattr(value, "loss", None)
    if isinstance(named, torch.Tensor) and named.requires_grad and named.numel() == 1:
        return named
    scalars = [t for t in flatten_tensors(value) if t.requires_grad and t.numel() == 1]
    return scalars[0] if len(scalars) == 1 else None
