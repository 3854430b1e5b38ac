"""Apply what-if toggles for one run, and put everything back afterwards.

``requires_grad`` flips leaves (a module path flips its whole subtree); ``no_grad`` and
``inference_mode`` wrap the whole forward or, through forward pre/post hooks, single modules;
``detach`` detaches a module's output with a forward hook. Every flag is restored and every hook
removed in ``finally`` — unless ``apply`` asks to keep the ``requires_grad`` changes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree

from ..toggles import Toggles
from .guard import _unseen
from .modules import compiling
from .names import leaf_names_from_params, module_names


class WhatIf:
    """The toggles of one run, resolved against the run's modules and named leaves."""

    def __init__(
        self, toggles: Toggles, modules: Mapping[str, torch.nn.Module], leaves: Mapping[str, torch.Tensor]
    ) -> None:
        self.toggles = toggles
        self.modules = modules
        self.leaves = leaves

    def flips(self) -> list[tuple[torch.Tensor, bool]]:
        """(leaf, new requires_grad) for every leaf the toggles name, modules expanded to their parameters."""
        out: list[tuple[torch.Tensor, bool]] = []
        # The nearest entry wins (as in why._flipped and the view): outer modules first, leaves last.
        items = self.toggles.requires_grad.items()
        for name, value in sorted(((n, v) for n, v in items if n not in self.leaves), key=lambda kv: len(kv[0])):
            if name in self.modules:
                out.extend((p, value) for p in self.modules[name].parameters())
        out.extend((self.leaves[n], v) for n, v in items if n in self.leaves)
        return out

    @contextmanager
    def applied(self) -> Iterator[None]:
        """requires_grad flips and module hooks, for the duration of the run."""
        before = [(t, t.requires_grad) for t, _ in self.flips()]
        handles: list[Any] = []
        try:
            for t, value in self.flips():
                if t.is_leaf:
                    t.requires_grad_(value)
            handles.extend(self._module_hooks())
            yield
        finally:
            for h in handles:
                h.remove()
            if not self.toggles.apply:
                for t, value in before:
                    if t.is_leaf:
                        t.requires_grad_(value)

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Whole-step no_grad / inference_mode, around the forward (and the loss) only. Grad mode is
        put back on the way out whatever happened: a module's no_grad is left by an always_call
        forward hook, which a KeyboardInterrupt skips."""
        grad_mode = torch.is_grad_enabled()
        try:
            with ExitStack() as stack:
                if self.toggles.inference_mode is True:
                    stack.enter_context(torch.inference_mode())
                elif self.toggles.no_grad is True:
                    stack.enter_context(torch.no_grad())
                yield
        finally:
            torch.set_grad_enabled(grad_mode)

    def _module_hooks(self) -> list[Any]:
        handles: list[Any] = []
        for kind in ("no_grad", "inference_mode"):
            scope = getattr(self.toggles, kind)
            for name in () if isinstance(scope, bool) else scope:
                module = self.modules[name]
                contexts: list[Any] = []
                handles.append(module.register_forward_pre_hook(_enter(kind, contexts)))
                handles.append(module.register_forward_hook(_exit(contexts), always_call=True))
        for name in self.toggles.detach:
            if name in self.modules:
                handles.append(self.modules[name].register_forward_hook(_detach_output))
        return handles

    def node_detaches(self) -> list[str]:
        """Detach targets that are node ids (not modules)."""
        return [d for d in self.toggles.detach if d not in self.modules]

    def keep(self) -> None:
        """``apply=True``: set the requires_grad flips again, after a guard that restores them."""
        for t, value in self.flips():
            if t.is_leaf and t.requires_grad != value:
                t.requires_grad_(value)


# -- toggles for the objects a %%gradsight cell makes ----------------------------------------------
#
# ``model = nn.Sequential(...)`` in the cell: a re-run makes a new model, so toggles naming
# ``model.0`` must reach that one, not the user's. A statement inserted after each assignment to
# ``model`` (cell.AfterAssign) calls ``BIND``, which applies them to the object just bound.

BIND = "_gradsight_bind"  # a leading underscore: the cell's capture never collects it
DETACH = "_gradsight_detach"  # detach=['x'] on a cell variable: ``x = _gradsight_detach('x', x)`` after each binding
FOLLOW = "_gradsight_follow"  # a why() trace of a tensor the cell makes: follows each one bound to its name


def detach_variable(name: str, value: Any) -> Any:
    """What ``detach=[name]`` does to a cell variable right after the cell binds it (named, so a
    taint trace tells this what-if's detach from the user's own)."""
    return value.detach()


def _under(name: str, key: str) -> bool:
    return key == name or key.startswith(name + ".")


class CellBinds:
    """Called (as ``BIND``) after the cell assigns one of ``names``: applies the toggles under that
    name to the module now bound to it in ``ns`` (the re-run's namespace), for the rest of the
    run. A name bound again (``model = ...`` twice, or ``model.head = nn.Linear(...)``: the user's
    model with a new layer) gets them again; what the plain :class:`WhatIf` toggled already is
    toggled twice, to no effect. ``old`` is the user's namespace. ``follow`` maps parameter paths
    to stand-ins that take the place (and data) of a parameter the re-run made (one that is not
    ``originals[path]``), so a taint trace started from the stand-in follows it."""

    def __init__(self, toggles: Toggles, ns: Mapping[str, Any], old: Mapping[str, Any], names: Collection[str],
                 follow: Mapping[str, torch.nn.Parameter] | None = None,
                 originals: Mapping[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        self.toggles = toggles
        self.ns, self.old, self.names = ns, old, set(names)
        self.follow, self.originals = dict(follow or {}), dict(originals or {})
        self.followed: set[str] = set()  # paths whose stand-in took a parameter's place in this run
        self._bound: dict[str, tuple[Any, set[str], ExitStack]] = {}  # name -> (object, keys resolved, undo)

    def keys(self, name: str) -> list[str]:
        """The toggle keys under ``name`` (``model``, ``model.0``, ``model.0.weight``)."""
        t = self.toggles
        scoped = [s for s in (t.no_grad, t.inference_mode) if not isinstance(s, bool)]
        every = [*t.requires_grad, *(k for s in scoped for k in s), *t.detach]
        return [k for k in dict.fromkeys(every) if _under(name, k)]

    @_unseen
    def __call__(self, name: str, value: Any) -> None:
        if name not in self.names or self.ns.get(name) is not value:
            return  # a function's local of the same name, not the cell's variable
        previous = self._bound.pop(name, None)
        if previous is not None:
            previous[2].close()
        if not isinstance(value, torch.nn.Module):
            return
        modules = {f"{name}.{sub}" if sub else name: m for sub, m in module_names(value)}
        leaves = {f"{name}.{p}": t for t, p in leaf_names_from_params(value).items()}
        stack = ExitStack()
        self._bound[name] = (value, {*modules, *leaves}, stack)
        for key, stand_in in self.follow.items():
            param = leaves.get(key)
            made = param is not stand_in and param is not self.originals.get(key)
            if made and isinstance(param, torch.nn.Parameter) and type(param) is torch.nn.Parameter:
                stack.enter_context(_standing_in(value, param, stand_in))
                leaves[key] = stand_in
                self.followed.add(key)
        t = self.toggles

        def scope(s: bool | tuple[str, ...]) -> tuple[str, ...]:
            return () if isinstance(s, bool) else tuple(k for k in s if k in modules)

        mine = Toggles(requires_grad={k: v for k, v in t.requires_grad.items() if k in modules or k in leaves},
                       no_grad=scope(t.no_grad), inference_mode=scope(t.inference_mode),
                       detach=tuple(k for k in t.detach if k in modules))  # fmt: skip
        if not mine.empty:
            stack.enter_context(WhatIf(mine, modules, leaves).applied())

    def __enter__(self) -> CellBinds:
        return self

    @_unseen
    def __exit__(self, *exc: object) -> None:
        while self._bound:
            self._bound.popitem()[1][2].close()

    def missed(self) -> list[tuple[str, list[str]]]:
        """(name, toggle keys) that did not reach the module the cell left bound to ``name``; call
        before leaving: the cell bound it some other way (a for loop, ``globals()``), or the
        module it made has no such path."""
        out: list[tuple[str, list[str]]] = []
        for name in sorted(self.names):
            final = self.ns.get(name)
            if final is self.old.get(name) or not isinstance(final, torch.nn.Module):
                continue
            bound = self._bound.get(name)
            found = bound[1] if bound is not None and bound[0] is final else set()
            keys = [k for k in self.keys(name) if k not in found]
            if keys:
                out.append((name, keys))
        return out


@contextmanager
def _standing_in(root: torch.nn.Module, param: torch.nn.Parameter, stand_in: torch.nn.Parameter) -> Iterator[None]:
    """``stand_in`` in ``param``'s place in every module of ``root`` (its data and flags too)."""
    places = [(m, k) for m in root.modules() for k, p in m._parameters.items() if p is param]
    stand_in.data = param.data
    stand_in.requires_grad_(param.requires_grad)
    for m, k in places:
        m._parameters[k] = stand_in
    try:
        yield
    finally:
        for m, k in places:
            if m._parameters.get(k) is stand_in:
                m._parameters[k] = param


def _enter(kind: str, contexts: list[Any]) -> Any:
    def hook(module: torch.nn.Module, args: Any) -> None:
        ctx = torch.inference_mode() if kind == "inference_mode" else torch.no_grad()
        ctx.__enter__()
        contexts.append(ctx)

    return hook


def _exit(contexts: list[Any]) -> Any:
    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if contexts:
            contexts.pop().__exit__(None, None, None)

    return hook


def _detach_output(module: torch.nn.Module, args: Any, output: Any) -> Any:
    return _pytree.tree_map_only(torch.Tensor, lambda t: t.detach(), output)


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
