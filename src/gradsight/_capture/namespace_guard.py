"""Put back what a ``%%gradsight`` cell's re-run (or its trace) changes in the objects the cell
reaches: :class:`NamespaceGuard` (moved out of ``guard.py``, which keeps what gradsight's own
forwards change: modules, inputs, random state)."""

from __future__ import annotations

import copy
import itertools
import types
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from .cell_state_copies import Held
from .guard import detached_copy, global_names, put_back, set_versions, unseen, version_of

IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
_SCALARS = (str, bytes, int, float, bool, type(None))
_CODE = (type, types.ModuleType, types.BuiltinFunctionType, types.MethodType)


class NamespaceGuard:
    """``with NamespaceGuard(ns, names):`` around a re-run of a ``%%gradsight`` cell (or its trace).

    The re-run executes the user's code again, and the code reaches the user's objects however it
    likes (directly, through an object's attributes, or through a helper function's globals), so a
    copied namespace cannot keep them apart. Instead what a training cell changes is put back
    afterwards, in the objects the cell can reach: the ``names`` it uses, the globals of the
    functions among them, and one level inside those (``trainer.model``, ``models["enc"]``):

    - modules: every submodule's parameters, buffers and submodules as objects (a cell that does
      ``model.head = nn.Linear(...)``), their values, and the training flags;
    - parameters and leaf tensors that require grad: values, ``.grad`` (accumulated in place),
      ``requires_grad``;
    - optimizers, LR schedulers and GradScalers: ``state_dict``; lists, dicts and sets: their items.

    Values go back through ``.data``, and the version counters the cell moved (``opt.step()``) go back
    with them (``guard.set_versions``), as in :class:`ModuleGuard`. Output
    printed and files written are not undone; neither are objects nested deeper."""

    @unseen
    def __init__(self, ns: dict[str, Any], names: Iterable[str]) -> None:
        # id -> (tensor, its values, .grad, .grad's values, requires_grad, the version counters of both)
        self._tensors: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, bool,
                                       tuple[int | None, int | None]]] = {}  # fmt: skip
        self._modules: list[tuple[torch.nn.Module, dict[str, Any], dict[str, Any], dict[str, Any], bool]] = []
        self._states: list[Held] = []  # optimizers given back in their own objects (a user's group dict)
        self._items: list[tuple[Any, Any]] = []
        self._hooks: list[tuple[Any, str, Any]] = []  # (owner, attribute, its hook dict's items or None)
        self._seen: set[int] = set()
        for value in reachable(ns, names):
            try:
                self._snapshot(value)
            except Exception:  # an object that cannot be snapshotted is left as it is
                continue

    def _snapshot(self, value: Any) -> None:
        if id(value) in self._seen:
            return
        self._seen.add(id(value))
        if isinstance(value, torch.nn.Module):
            for m in value.modules():
                self._modules.append((m, dict(m._modules), dict(m._parameters), dict(m._buffers), m.training))
                self._keep_hooks(m, _MODULE_HOOKS)
                for t in (*m._parameters.values(), *m._buffers.values()):
                    if t is not None:
                        self._tensor(t)
        elif isinstance(value, torch.Tensor):
            if value.is_leaf and value.requires_grad:
                self._tensor(value)
        elif has_state(value):
            self._states.append(Held(value))
            for group in getattr(value, "param_groups", ()):
                for p in group.get("params", ()):
                    if isinstance(p, torch.Tensor):
                        self._tensor(p)
        elif type(value) in (list, dict, set):
            self._items.append((value, copy.copy(value)))

    def _tensor(self, t: torch.Tensor) -> None:
        if id(t) in self._tensors or t.is_meta or isinstance(t, (UninitializedParameter, UninitializedBuffer)):
            return
        grad = t.grad
        versions = (version_of(t), None if grad is None else version_of(grad))
        self._tensors[id(t)] = (t, detached_copy(t), grad, None if grad is None else detached_copy(grad),
                                t.requires_grad, versions)  # fmt: skip
        self._keep_hooks(t, _TENSOR_HOOKS)

    def _keep_hooks(self, owner: Any, attributes: tuple[str, ...]) -> None:
        """A cell that registers hooks (the seed notebook's ``register_full_backward_hook`` loop)
        would add them again on every re-run: the hook dicts' items go back in place (torch holds
        a tensor's dict itself, so the dict object stays)."""
        for attribute in attributes:
            hooks = getattr(owner, attribute, None)
            self._hooks.append((owner, attribute, None if hooks is None else dict(hooks)))
        if isinstance(owner, torch.nn.Module):
            self._hooks.append((owner, "_is_full_backward_hook", owner._is_full_backward_hook))

    def holds(self, t: torch.Tensor) -> bool:
        """Does this guard put ``t``'s values (and version counter) back?"""
        kept = self._tensors.get(id(t))
        return kept is not None and kept[0] is t

    def __enter__(self) -> NamespaceGuard:
        return self

    @unseen
    def __exit__(self, *exc: object) -> None:
        for m, modules, params, buffers, training in self._modules:  # the objects first (a reassigned head)
            for current, saved in ((m._modules, modules), (m._parameters, params), (m._buffers, buffers)):
                if current != saved or any(current[k] is not v for k, v in saved.items()):
                    current.clear()
                    current.update(saved)
            m.training = training  # a cell that calls net.eval() / net.train()
        for owner, attribute, items in self._hooks:
            hooks = getattr(owner, attribute, None)
            if attribute == "_is_full_backward_hook":
                owner._is_full_backward_hook = items
            elif hooks is not None and (hooks.keys() != (items or {}).keys()):
                hooks.clear()
                hooks.update(items or {})
        with torch.no_grad():
            for t, value, grad, grad_value, requires_grad, _ in self._tensors.values():
                if t.requires_grad != requires_grad:
                    t.requires_grad_(requires_grad)
                put_back(t, value)
                if grad is not None and grad_value is not None:
                    put_back(grad, grad_value)
                t.grad = grad
        # The values are back: so are the version counters an optimizer step in the cell moved, or a
        # graph the user built before the re-run that saved a parameter would fail its backward.
        set_versions((t, version) for t, _, _, _, _, (version, _) in self._tensors.values())
        set_versions((g, version) for _, _, g, _, _, (_, version) in self._tensors.values() if g is not None)
        for held in self._states:
            held.give_back()
        for container, items in self._items:
            if isinstance(container, list):
                container[:] = items
            else:
                container.clear()
                container.update(items)


_MODULE_HOOKS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
                 "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
                 "_backward_pre_hooks")  # fmt: skip
_TENSOR_HOOKS = ("_backward_hooks", "_post_accumulate_grad_hooks")


def with_helpers(ns: Mapping[str, Any], names: Iterable[str]) -> set[str]:
    """``names`` and the globals of the functions among them, also those their nested code reads (a
    lambda, a comprehension, a nested ``def``): a cell's ``loss = helper()`` reaches ``model``.

    >>> ns = {"model": object()}
    >>> exec("def helper(): return (lambda: model)()", ns)
    >>> sorted(with_helpers(ns, ["helper"]))
    ['helper', 'model']
    """
    out = set(names)
    for name in list(out):
        value = ns.get(name)
        if isinstance(value, types.FunctionType):
            out.update(g for g in global_names(value.__code__) if g in ns)
    return out


def names_reached(ns: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The namespace names a cell using ``names`` reaches, sorted: those it uses and the globals of the
    helper functions among them (:func:`with_helpers`), not private ones nor IPython's own (``In``, ``_``)."""
    visible = [n for n in names if n in ns and not n.startswith("_") and n not in IPYTHON_NAMES]
    return sorted(n for n in with_helpers(ns, visible) if not n.startswith("_") and n not in IPYTHON_NAMES)


def reachable(ns: dict[str, Any], names: Iterable[str]) -> list[Any]:
    """The objects a cell using ``names`` can reach (see :class:`NamespaceGuard`)."""
    out: list[Any] = []
    for n in names_reached(ns, names):
        value = ns[n]
        if isinstance(value, (*_SCALARS, *_CODE, types.FunctionType)):
            continue
        out.append(value)
        if isinstance(value, (torch.nn.Module, torch.Tensor)) or has_state(value):
            continue
        out.extend(v for _, v in one_level_in(n, value)
                   if isinstance(v, (torch.nn.Module, torch.Tensor, list, dict, set)) or has_state(v))  # fmt: skip
    return out


def one_level_in(name: str, value: Any, limit: int = 256) -> list[tuple[str, Any]]:
    """The values one level inside a container or an object, named as code reaches them:
    ``models['enc']``, ``layers[0]``, ``trainer.model`` (the first ``limit``: a vocabulary dict of a
    million words costs as little as a small one).

    >>> one_level_in("vocab", {f"w{i}": i for i in range(10**6)}, limit=2)
    [("vocab['w0']", 0), ("vocab['w1']", 1)]
    """
    if isinstance(value, dict):
        items = ((f"{name}[{k!r}]", v) for k, v in value.items() if isinstance(k, (str, int)))
    elif isinstance(value, (list, tuple)):
        items = ((f"{name}[{i}]", v) for i, v in enumerate(value))
    else:
        attributes = getattr(value, "__dict__", None)
        attributes = attributes if isinstance(attributes, dict) else {}
        items = ((f"{name}.{k}", v) for k, v in attributes.items() if not k.startswith("__"))
    return list(itertools.islice(items, limit))


def has_state(value: Any) -> bool:
    """Does ``value`` hold training state behind ``state_dict`` / ``load_state_dict`` (an optimizer, an LR
    scheduler, an AMP ``GradScaler``, whose ``update()`` grows its scale)?"""
    return isinstance(value, _STATEFUL)


_STATEFUL = (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler, torch.amp.GradScaler)
