"""What a function reaches by name, for ``gradsight.debugger(fn)`` to name the modules and tensors
its run touches (:mod:`.specs`).

Two rings. ``near``: ``fn``'s own globals and closure, its object's attributes (a bound method's
``self.model``; an instance's ``__call__``; a ``functools.partial``'s function), and the names of
the functions among them — the modules a run of ``fn`` is expected to use: they are refused while
lazy, and their parameters are leaves expected to get a gradient. ``deep``: the names of the
functions those call (and the methods of objects they call), up to :data:`SCOPE_DEPTH` calls deep,
:data:`SCOPE_FUNCTIONS` functions at most — helpers an evaluation path or a flag may never call (a
teacher model, an eval head), so they only serve to name what a run touched (:class:`.specs.DeepUse`).
A name keeps its nearest meaning: a deeper function's ``first = net[0]`` does not rename ``net.0``.

>>> notebook = {"__name__": "__main__", "lin": torch.nn.Linear(2, 2)}
>>> for code in ("def helper(): return lin", "def step(): return helper()", "def top(): return step()"):
...     exec(code, notebook)
>>> reach = scope_of(notebook["step"])
>>> sorted(reach.near), sorted(reach.deep)
(['helper', 'lin'], [])
>>> reach = scope_of(notebook["top"])
>>> sorted(reach.near), sorted(reach.deep)
(['helper', 'step'], ['lin'])
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .guard import global_names
from .namespace_guard import one_level_in

SCOPE_DEPTH = 4  # calls deep: fn → step → block → layer → its helper (the names of 5 levels of code)
SCOPE_FUNCTIONS = 64  # functions read at most (each run reads them again, to see a global rebound)


@dataclass
class Reach:
    """The names ``fn`` reaches: ``near`` (its own code and one call down), ``deep`` (further down,
    none of ``near``'s names)."""

    near: dict[str, Any] = field(default_factory=dict)
    deep: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: Any, deep: bool) -> None:
        if name not in self.near and name not in self.deep:  # the nearer name wins
            (self.deep if deep else self.near)[name] = value


def scope_of(fn: Callable[..., Any]) -> Reach:
    """What ``fn`` reaches by name (see the module's docstring): level 0 is ``fn``'s own code, level
    1 the functions it names, and so on to :data:`SCOPE_DEPTH`; levels 0 and 1 are ``near`` (but
    for the methods of objects, found from level 0 on: ``deep``)."""
    reach = Reach()
    fn, owner = _callee(fn)
    if owner is not None:
        code = getattr(fn, "__code__", None)
        me = code.co_varnames[0] if code is not None and code.co_argcount else "self"
        if isinstance(owner, torch.nn.Module):
            reach.add(me, owner, deep=False)
        else:
            for k, v in list(getattr(owner, "__dict__", {}).items())[:256]:
                reach.add(f"{me}.{k}", v, deep=False)
    seen = {id(fn)}
    level: list[tuple[Any, bool, Any]] = [(fn, False, owner)]  # (function, read into deep, its self)
    for depth in range(SCOPE_DEPTH + 1):
        called: list[tuple[Any, bool, Any]] = []
        for f, deep, me in level:
            names = _names_of(f)
            for name, v in names.items():
                reach.add(name, v, deep)
            if depth == SCOPE_DEPTH:
                continue
            for g, method, of in _callees(f, names, me):
                if id(g) not in seen and len(seen) < SCOPE_FUNCTIONS:
                    seen.add(id(g))
                    called.append((g, deep or method or depth >= 1, of))  # a method of an object: deep
        level = called
    return reach


def _callee(fn: Any) -> tuple[Any, Any]:
    """The code a call of ``fn`` runs, and the object it runs on: a bound method's function and its
    object, a ``functools.partial``'s function, an instance's ``__call__``."""
    for _ in range(8):  # partial(partial(f, 1), 2), a callable instance whose __call__ is a partial
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, types.MethodType):
            owner = fn.__self__
            return fn.__func__, None if isinstance(owner, (type, types.ModuleType)) else owner
        elif not isinstance(fn, (types.FunctionType, types.BuiltinFunctionType, type)) and callable(fn):
            calls = _methods(type(fn), [])  # its class's __call__, if the user's
            return (calls[0], fn) if calls else (fn, None)
        else:
            return fn, None
    return fn, None


def _callees(f: Any, names: dict[str, Any], owner: Any) -> list[tuple[Any, bool, Any]]:
    """The user's functions among ``names`` (a partial's or a bound method's too), and the methods of
    the objects among them (and of ``owner``, ``f``'s ``self``) that ``f``'s code names
    (``trainer.step()``): ``(function, a method, its object)``."""
    out: list[tuple[Any, bool, Any]] = []
    attributes: Sequence[str] | None = None
    for v in (*names.values(), *([] if owner is None else [owner])):
        if isinstance(v, (functools.partial, types.MethodType)):
            target, of = _callee(v)
            if _followed(target):
                out.append((target, of is not None, of))
        elif _followed(v):
            out.append((v, False, None))
        elif not isinstance(v, _NOT_OBJECTS) and type(v).__module__ not in _BUILTIN_MODULES:
            if attributes is None:
                code = getattr(f, "__code__", None)
                attributes = global_names(code) if code is not None else ()
            out.extend((m, True, v) for m in _methods(type(v), attributes))
    return out


def _methods(cls: type, attributes: Sequence[str]) -> list[Callable[..., Any]]:
    """The user's methods of ``cls`` named in ``attributes`` (and its ``__call__``)."""
    out = []
    for name in ("__call__", *attributes):
        for klass in cls.__mro__:
            if name in klass.__dict__:
                value = klass.__dict__[name]
                value = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if _followed(value):
                    out.append(value)
                break
    return out


_NOT_OBJECTS = (torch.Tensor, str, bytes, int, float, complex, bool, type(None), type, types.ModuleType,
                types.FunctionType, types.BuiltinFunctionType, types.MethodType, list, tuple, dict, set,
                frozenset)  # fmt: skip
_BUILTIN_MODULES = frozenset({"builtins", "collections", "typing", "functools", "types"})


def _followed(v: Any) -> bool:
    """A function of the user's to read the names of: not torch's (or gradsight's)."""
    module = getattr(v, "__module__", None) or ""
    return isinstance(v, types.FunctionType) and not module.startswith(("torch.", "gradsight.")) and module != "torch"


def _names_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The globals ``fn``'s code names (also in its nested code: a comprehension's, a lambda's) and
    its closure's values."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return {}
    globs = getattr(fn, "__globals__", {})
    out = {n: globs[n] for n in global_names(code) if n in globs}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:
            continue
    return out


_NOT_CONTAINERS = (torch.nn.Module, torch.Tensor, str, bytes, type, types.ModuleType, types.FunctionType,
                   types.BuiltinFunctionType, types.MethodType)  # fmt: skip


def one_level(scope: dict[str, Any]) -> dict[str, Any]:
    """The modules and tensors of ``scope`` and those one level inside its values: ``models["enc"]``,
    ``layers[0]``, ``trainer.model`` (a function that reaches its model through a dict or an object)."""
    out = {k: v for k, v in scope.items() if isinstance(v, (torch.nn.Module, torch.Tensor))}
    for var, value in scope.items():
        if isinstance(value, _NOT_CONTAINERS):
            continue
        for name, v in one_level_in(var, value):
            if isinstance(v, (torch.nn.Module, torch.Tensor)):
                out.setdefault(name, v)
    return out
