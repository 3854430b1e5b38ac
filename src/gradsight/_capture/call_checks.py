"""The user's callables checked against how gradsight calls them, before any run: ``fn()`` with no
arguments (``specs.spec_for_function``), ``loss(output)`` with one (``roots.roots_of``).

A mistake found here raises a ``TypeError`` at ``gradsight.debugger(...)`` saying what to pass; one
found only by the run is reported after it (``tracebacks.users_callables``: the user's error, not
gradsight's bug), later and further from the line that made it. Python callables show a signature
(a module's ``forward``, a wrapper's own). A torch builtin shows none, but its ATen overloads say what
it needs: ``F.cosine_similarity`` is the builtin ``torch.cosine_similarity(x1, x2)``, and given as
``loss=`` it would only fail when called with the output alone. So would a ``torch.jit.script``
function, which shows its schema instead. A callable that shows neither is let through: the run tells.

>>> import torch
>>> try:
...     check_loss(torch.dist)
... except TypeError as e:
...     print(str(e).split("e.g. ")[-1])
loss=lambda out: torch.dist(out, other)
"""

from __future__ import annotations

import inspect
import types
from typing import Any

import torch


def check_loss(loss: Any) -> Any:
    """``loss`` (None, or what is called with the model's output as its one argument), or a
    ``TypeError`` saying how to pass the rest."""
    if loss is not None and not callable(loss):
        raise TypeError(
            f"loss must be a function of the model's output, e.g. loss=lambda out: out.pow(2).sum(); "
            f"got {type(loss).__name__}"
        )
    takes = _signature(loss)
    if takes is None:
        needs = _torch_op_needs(loss)
        if needs is not None and len(needs) > 1:
            name = _torch_name(loss)
            raise TypeError(
                f"loss= is called with the model's output only, but {name}({', '.join(needs)}) needs more: pass "
                f"the rest yourself, e.g. loss=lambda out: {name}(out, {', '.join(needs[1:])})"
            )
        return loss
    if _binds(takes, 1):
        return loss
    name, call = _names(loss, "criterion")
    if _binds(takes, 0):
        raise TypeError(
            f"loss= is called with the model's output, but {name}{_shown(takes)} takes no argument: "
            "loss=lambda out: out.pow(2).sum() (out: what the model returned)"
        )
    raise TypeError(
        f"loss= is called with the model's output only, but {name}{_shown(takes)} needs more: pass the rest "
        f"yourself, e.g. loss=lambda out: {call}(out, target)"
    )


def check_function(fn: Any) -> None:
    """``gradsight.debugger(fn)`` calls ``fn()`` with no arguments: a ``TypeError`` for an ``fn``
    that needs some (``torch.randn`` too)."""
    takes = _signature(fn)
    if takes is not None and not _binds(takes, 0):
        name, call = _names(fn, "fn")
        raise TypeError(
            f"gradsight.debugger(fn) calls fn() with no arguments, but {name}{_shown(takes)} needs some: a function "
            "passed alone must take no arguments and return the loss: pass one that calls it with yours, e.g. "
            f"gradsight.debugger(lambda: {call}(model, x))"
        )
    if takes is None and _torch_op_needs(fn):
        raise TypeError(
            f"gradsight.debugger(fn) calls fn() with no arguments, but {_torch_name(fn)}() needs some: "
            "a function passed alone must take no arguments and return the loss, e.g. "
            "gradsight.debugger(lambda: torch.randn(3, requires_grad=True).sum())"
        )


def _torch_op_needs(fn: Any) -> list[str] | None:
    """The positional arguments without a default of the overload of ``fn`` needing the fewest
    (``self`` named ``input``, as torch's Python bindings name it), where ``fn`` is a torch builtin
    (``torch.dist``, ``torch._C._nn.mse_loss``; no tensor's bound method: ``x.sum`` takes none) or a
    ``torch.jit.script`` function; None for any other, or an op torch knows no schema of (a private
    API, read defensively: the run tells). Keyword-only ones do not count: an overload's ``out`` is
    optional in Python."""
    schemas: list[Any]
    try:
        if isinstance(fn, torch.jit.ScriptFunction):
            schemas = [fn.schema]
        elif _is_torch_builtin(fn):
            schemas = torch._C._jit_get_schemas_for_operator(f"aten::{fn.__name__}")
        else:
            return None
        needs = [[a.name for a in s.arguments if not a.kwarg_only and not a.has_default_value()] for s in schemas]
    except Exception:  # (a torch without this private API)
        return None
    fewest = min(needs, key=len, default=None)
    return None if fewest is None else ["input" if n == "self" else n for n in fewest]


def _is_torch_builtin(fn: Any) -> bool:
    """A builtin function of a torch module (``torch``, ``torch._C._nn``), not bound to an object."""
    bound = getattr(fn, "__self__", None)
    name, module = getattr(fn, "__name__", None), getattr(fn, "__module__", None) or ""
    return (
        isinstance(fn, types.BuiltinFunctionType)
        and isinstance(bound, (type(None), types.ModuleType, type))
        and isinstance(name, str)
        and (module == "torch" or module.startswith("torch."))
    )


def _torch_name(fn: Any) -> str:
    """``torch.dist``, ``torch._C._nn.mse_loss``; a script function by its own name."""
    if isinstance(fn, torch.jit.ScriptFunction):
        return str(fn.name)
    return f"{fn.__module__}.{fn.__name__}"


def _signature(fn: Any) -> inspect.Signature | None:
    """The signature ``fn`` is called by (a module's ``forward``; a wrapper's own, not the function it
    wraps: a decorator may supply arguments), or None where Python knows none (a builtin)."""
    try:
        return inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn, follow_wrapped=False)
    except (TypeError, ValueError):
        return None


def _binds(signature: inspect.Signature, count: int) -> bool:
    """Can a call with ``count`` positional arguments bind to ``signature``?"""
    try:
        signature.bind(*[None] * count)
    except TypeError:
        return False
    return True


def _names(fn: Any, stand_in: str) -> tuple[str, str]:
    """How to name ``fn`` in a message, and how the user would call it: ``F.mse_loss`` both;
    ``MSELoss.forward`` and ``stand_in`` (the user's instance); ``the lambda`` and ``stand_in``."""
    if isinstance(fn, torch.nn.Module):
        return f"{type(fn).__name__}.forward", stand_in
    name = str(getattr(fn, "__name__", None) or type(fn).__name__)
    if name == "<lambda>":
        return "the lambda", stand_in
    name = f"F.{name}" if getattr(fn, "__module__", None) == "torch.nn.functional" else name
    return name, name


def _shown(signature: inspect.Signature) -> str:
    """``(input, target, reduction='mean')``: the parameters without their annotations."""
    empty = inspect.Parameter.empty
    plain = [p.replace(annotation=empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=plain, return_annotation=empty))
