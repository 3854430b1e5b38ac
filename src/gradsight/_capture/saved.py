"""Reading what autograd saved for a node: ``_saved_*`` attributes, or a custom Function's ctx.

Facts behind the rules (research/autograd-facts.md): the ``_saved_*`` getters are class
attributes, so their names are cached per node class (§2.8); negative dims come back as
2**64 - k (§2.7); tensors raise once backward freed them (§2.4); reading a saved tensor of a
non-reentrant checkpoint region re-runs that region's forward, so those are not read (§4.7), nor
any tensor packed by the user's saved_tensors_hooks (its unpack hook may move or free it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..graph import SavedValue, TensorSummary, Unavailable
from .text import shorten

# Called for every tensor found, with its path (``_saved_self``, ``_saved_indices[1]``): returns the
# summary to show, and may keep the tensor (see store.TensorStore).
SummarizeFn = Callable[[str, torch.Tensor], TensorSummary]

FREED = (
    "freed by backward before gradsight read it: show the debugger before calling backward, "
    "run the code in a %%gradsight cell, or pass retain_graph=True"
)
CHECKPOINTED = "inside a non-reentrant checkpoint region: reading it would re-run the region's forward"
PACKED = (
    "packed by saved_tensors_hooks (CPU offload, compression, …): reading it would call the unpack hook "
    "before backward does — which may move or free it — so gradsight leaves it alone"
)

# A loss node's ``_saved_reduction`` is ATen's Reduction enum (aten/src/ATen/core/Reduction.h: None 0,
# Mean 1, Sum 2; torch.nn._reduction.get_enum): shown as the ``reduction=`` the user wrote.
REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}

_ATTRS: dict[type, tuple[tuple[str, ...], dict[str, str]]] = {}
_CTX_SKIP = frozenset({"to_save", "non_differentiable", "dirty_tensors", "saved_variables"})
_TENSOR = torch.Tensor
_BIG = 1 << 63
_WRAP = 1 << 64


def saved_attribute_names(node: Any) -> tuple[str, ...]:
    """The ``_saved_*`` attribute names of this node's class (cached per class)."""
    return _class_info(node)[0]


def _class_info(node: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    """Cached per class: the saved names, and ``_saved_x`` → ``_raw_saved_x`` for the tensor ones
    (the ``SavedTensor`` handles, whose unpack hook tells a checkpointed tensor apart)."""
    cls = type(node)
    info = _ATTRS.get(cls)
    if info is None:
        attrs = set(dir(cls))
        names = tuple(sorted(a for a in attrs if a.startswith("_saved_")))
        raws = {a: "_raw" + a for a in names if "_raw" + a in attrs}
        info = _ATTRS[cls] = (names, raws)
    return info


def is_python_function(node: Any) -> bool:
    """A custom ``autograd.Function`` ctx (also compiled and checkpoint regions)."""
    return isinstance(node, torch.autograd.function.BackwardCFunction)


def read_saved(node: Any, summarize: SummarizeFn) -> dict[str, SavedValue]:
    """Every value autograd saved for ``node``, as torch-free data."""
    if is_python_function(node):
        return _read_ctx(node, summarize)
    names, raws = _class_info(node)
    if not names:
        return {}
    out: dict[str, SavedValue] = {}
    for attr in names:
        raw = raws.get(attr)
        hooked = None if raw is None else _unpacked_by_hook(node, raw)
        if hooked is not None:
            out[attr] = Unavailable(hooked)
            continue
        try:
            value = getattr(node, attr)
        except RuntimeError as e:
            out[attr] = Unavailable(FREED if "freed" in str(e) else shorten(f"unreadable: {e}"))
            continue
        # the common kinds inline (this loop runs ~3 times per node): tensors, ints, bools, None
        kind = type(value)
        if kind is _TENSOR:
            out[attr] = summarize(attr, value)
        elif kind is int:
            out[attr] = value - _WRAP if value >= _BIG else value
            if attr == "_saved_reduction":
                out[attr] = REDUCTIONS.get(value, value)
        elif kind is bool or value is None:
            out[attr] = value
        else:
            out[attr] = convert(value, summarize, attr)
    return out


def _unpacked_by_hook(node: Any, raw_attr: str) -> str | None:
    """Why the tensor(s) behind ``raw_attr`` must not be read (None: they may be).

    Checked per tensor: inside one non-reentrant checkpoint region some saved tensors carry
    checkpoint's unpack hook and others (a parameter, a tensor made under no_grad) do not, and
    reading a single hooked one re-runs the region's forward — updating its buffers (spectral
    norm's power iteration) and so changing the gradient the user's backward then computes. The
    user's own saved_tensors_hooks may free what they unpack (a one-shot offload): reading first
    would break the user's backward."""
    try:
        raw = getattr(node, raw_attr)
    except (RuntimeError, AttributeError):  # freed by backward (reading the value says so), or no handles
        return None
    for handle in raw if isinstance(raw, (list, tuple)) else (raw,):
        hook = getattr(handle, "unpack_hook", None)
        if hook is not None:
            return CHECKPOINTED if getattr(hook, "__module__", "") == "torch.utils.checkpoint" else PACKED
    return None


def _read_ctx(node: Any, summarize: SummarizeFn) -> dict[str, SavedValue]:
    out: dict[str, SavedValue] = {}
    hooked = _unpacked_by_hook(node, "_raw_saved_tensors")
    if hooked is not None:
        out["saved_tensors"] = Unavailable(hooked)
    else:
        try:
            tensors = node.saved_tensors
        except RuntimeError as e:
            out["saved_tensors"] = Unavailable(FREED if "freed" in str(e) else shorten(f"unreadable: {e}"))
        else:
            for i, t in enumerate(tensors):
                out[f"saved_tensors[{i}]"] = convert(t, summarize, f"saved_tensors[{i}]")
    for key, value in sorted(vars(node).items()):
        if not key.startswith("_") and key not in _CTX_SKIP:
            out[key] = convert(value, summarize, key)
    return out


def convert(value: object, summarize: SummarizeFn, path: str = "") -> SavedValue:
    """A saved value as plain data: tensors summarized, negative dims decoded, tuples kept."""
    kind = type(value)
    if kind is int:
        return value - _WRAP if value >= _BIG else value  # type: ignore[operator,return-value]
    if kind is tuple and all(type(v) is int for v in value):  # type: ignore[attr-defined]
        # sizes, strides, dims: the common case, kept fast
        return value if all(v < _BIG for v in value) else tuple(v - _WRAP if v >= _BIG else v for v in value)  # type: ignore[attr-defined,return-value]
    if isinstance(value, torch.Tensor):
        return summarize(path, value)
    if value is None or isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int):
        return value - _WRAP if value >= _BIG else value
    if isinstance(value, (tuple, list)):
        return tuple(convert(v, summarize, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(value, torch.SymInt):
        return int(value)
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return str(value).removeprefix("torch.")
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"
