"""Detaching for what-if re-runs: a module's output, whatever holds its tensors (:func:`detach_output`,
``detach=["layer1"]``), and the output of one backward-graph node (:class:`CallIndex` finds the
torch call that made it in a first pass, :class:`Detacher` detaches that call's output in the run)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, MutableMapping
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree

from .modules import compiling
from .outputs import flatten_tensors
from .text import with_article


def detach_output(module: torch.nn.Module, args: Any, output: Any, *, path: str = "") -> Any:
    """What ``detach=[path]`` does to the module's output: the same structure, every tensor in it
    detached — tuples, lists, dicts, named tuples, registered pytrees, dataclasses (frozen ones too)
    and mappings such as Hugging Face's ``ModelOutput``. Raises, naming the type, when the output
    holds tensors that require grad in a container it cannot rebuild (a plain object's attributes)."""
    try:
        out = _detached(output)
        if _kept(output, out):
            raise _CannotRebuildError(type(output))
    except _CannotRebuildError as e:
        where = f"{path} ({type(module).__name__})" if path else type(module).__name__
        raise TypeError(
            f"gradsight's detach toggle could not detach the output of module {where}: it holds tensors that "
            f"require grad inside {with_article(e.args[0].__name__)}, which gradsight cannot rebuild with detached "
            "tensors. Detach inside the module's forward, or toggle a module that returns tensors, tuples, lists, "
            "dicts or dataclasses."
        ) from None
    return out


class _CannotRebuildError(Exception):
    """A container (its type) whose tensors cannot be replaced with detached ones."""


def _kept(before: Any, after: Any) -> bool:
    """Does ``after`` still hold one of the tensors of ``before`` that require grad?"""
    mine = {id(t) for t in flatten_tensors(before) if t.requires_grad}
    return bool(mine) and any(id(t) in mine for t in flatten_tensors(after))


def _detached(value: Any) -> Any:
    return _pytree.tree_map(_detached_leaf, value)


def _detached_leaf(value: Any) -> Any:
    """A pytree leaf detached: a tensor, or a container pytree does not know (a dataclass, a mapping)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _detached_dataclass(value) if flatten_tensors(value) else value
    if isinstance(value, Mapping):
        return _detached_mapping(value) if flatten_tensors(value) else value
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and any(t.requires_grad for t in flatten_tensors(list(attributes.values()))):
        raise _CannotRebuildError(type(value))
    return value


def _detached_dataclass(value: Any) -> Any:
    if isinstance(value, Mapping):  # a ModelOutput: a dataclass and an OrderedDict kept in step
        return _detached_mapping(value)
    fields = {f.name: f for f in dataclasses.fields(value)}
    changed = {k: _detached(getattr(value, k)) for k in fields
               if hasattr(value, k) and flatten_tensors(getattr(value, k))}  # fmt: skip
    init = {k: v for k, v in changed.items() if fields[k].init}
    try:
        out = dataclasses.replace(value, **init)  # runs __init__ / __post_init__, as the class wants
    except Exception:  # an InitVar without a default, a validating __post_init__: fields set one by one
        out, init = copy.copy(value), {}
    for k, v in changed.items():
        if k not in init:
            object.__setattr__(out, k, v)  # a field __init__ does not take; a frozen dataclass's too
    return out


def _detached_mapping(value: Mapping[Any, Any]) -> Any:
    items = {k: _detached(v) for k, v in value.items()}
    if isinstance(value, MutableMapping):
        try:
            out = copy.copy(value)
            for k, v in items.items():
                out[k] = v  # through __setitem__: a ModelOutput keeps its attribute in step
            return out
        except Exception:
            pass
    try:
        return type(value)(items)  # type: ignore[call-arg]  # a Mapping subclass built from a dict
    except Exception:
        raise _CannotRebuildError(type(value)) from None


# -- detaching the output of one node (a backward-graph edge) --------------------------------------
#
# A node of the backward graph has no name in forward code, but a forward replayed with the same RNG
# makes the same top-level torch calls in the same order. So a first pass numbers the calls and
# notes which call produced each node (then the graph's ids tell which node is which); the real run
# detaches that call's output. Nodes created inside a call (the TBackward0 inside F.linear) are not
# any call's output and cannot be cut alone: detach their module's output instead.


class CallIndex(TorchFunctionMode):
    """Numbers the top-level torch calls of a forward; remembers which produced each node."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.producer: dict[Any, tuple[int, int]] = {}  # grad_fn -> (call number, position in its output)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if compiling():  # invisible to dynamo (see modules._SharedHooks)
            return func(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        call, self.calls = self.calls, self.calls + 1
        for pos, t in enumerate(_pytree.tree_flatten(out)[0]):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                self.producer.setdefault(t.grad_fn, (call, pos))
        return out


class Detacher(TorchFunctionMode):
    """Detaches the outputs at ``targets`` ({call number: {positions}}) of the same forward."""

    def __init__(self, targets: Mapping[int, set[int]]) -> None:
        super().__init__()
        self.targets = targets
        self.calls = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if compiling():  # invisible to dynamo (see modules._SharedHooks)
            return func(*args, **(kwargs or {}))
        out = func(*args, **(kwargs or {}))
        call, self.calls = self.calls, self.calls + 1
        wanted = self.targets.get(call)
        if not wanted:
            return out
        leaves, spec = _pytree.tree_flatten(out)
        leaves = [t.detach() if i in wanted and isinstance(t, torch.Tensor) else t for i, t in enumerate(leaves)]
        return _pytree.tree_unflatten(leaves, spec)
