"""Reading what autograd saved for a node: ``_saved_*`` attributes, or a custom Function's ctx.

Facts behind the rules (research/autograd-facts.md): the ``_saved_*`` getters are class
attributes, so their names are cached per node class (§2.8); negative dims come back as
2**64 - k (§2.7); tensors raise once backward freed them (§2.4); reading a saved tensor of a
non-reentrant checkpoint region re-runs that region's forward, so those are not read (§4.7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..graph import SavedValue, TensorSummary, Unavailable

SummarizeFn = Callable[[torch.Tensor], TensorSummary]

FREED = (
    "freed by backward before gradsight read it: show the debugger before calling backward, "
    "run the code in a %%gradsight cell, or pass retain_graph=True"
)
CHECKPOINTED = "inside a non-reentrant checkpoint region: reading it would re-run the region's forward"

_ATTRS: dict[type, tuple[str, ...]] = {}
_CTX_SKIP = frozenset({"to_save", "non_differentiable", "dirty_tensors", "saved_variables"})


def saved_attribute_names(node: Any) -> tuple[str, ...]:
    """The ``_saved_*`` attribute names of this node's class (cached per class)."""
    cls = type(node)
    names = _ATTRS.get(cls)
    if names is None:
        names = _ATTRS[cls] = tuple(a for a in dir(cls) if a.startswith("_saved_"))
    return names


def is_python_function(node: Any) -> bool:
    """A custom ``autograd.Function`` ctx (also compiled and checkpoint regions)."""
    return isinstance(node, torch.autograd.function.BackwardCFunction)


def read_saved(node: Any, summarize: SummarizeFn) -> dict[str, SavedValue]:
    """Every value autograd saved for ``node``, as torch-free data."""
    if is_python_function(node):
        return _read_ctx(node, summarize)
    out: dict[str, SavedValue] = {}
    for attr in saved_attribute_names(node):
        if _is_checkpointed(node, attr):
            out[attr] = Unavailable(CHECKPOINTED)
            continue
        try:
            value = getattr(node, attr)
        except RuntimeError as e:
            out[attr] = Unavailable(FREED if "freed" in str(e) else f"unreadable: {e}"[:300])
            continue
        out[attr] = convert(value, summarize)
    return out


def _is_checkpointed(node: Any, attr: str) -> bool:
    raw = getattr(node, "_raw" + attr, None)
    hook = getattr(raw, "unpack_hook", None) if raw is not None else None
    return hook is not None and getattr(hook, "__module__", "") == "torch.utils.checkpoint"


def _read_ctx(node: Any, summarize: SummarizeFn) -> dict[str, SavedValue]:
    out: dict[str, SavedValue] = {}
    try:
        tensors = node.saved_tensors
    except RuntimeError as e:
        out["saved_tensors"] = Unavailable(FREED if "freed" in str(e) else f"unreadable: {e}"[:300])
    else:
        for i, t in enumerate(tensors):
            out[f"saved_tensors[{i}]"] = convert(t, summarize)
    for key, value in sorted(vars(node).items()):
        if not key.startswith("_") and key not in _CTX_SKIP:
            out[key] = convert(value, summarize)
    return out


def convert(value: object, summarize: SummarizeFn) -> SavedValue:
    """A saved value as plain data: tensors summarized, negative dims decoded, tuples kept."""
    if isinstance(value, torch.Tensor):
        return summarize(value)
    if value is None or isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int):
        return value - (1 << 64) if value >= (1 << 63) else value
    if isinstance(value, (tuple, list)):
        return tuple(convert(v, summarize) for v in value)
    if isinstance(value, torch.SymInt):
        return int(value)
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value).removeprefix("torch.")
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"
