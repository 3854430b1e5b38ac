"""Results a ``%%gradsight`` cell computes under ``no_grad``, detaches or
makes from a Python number (``torch.tensor(x.item())``), read from its code (the
tensor does not say): :func:`cut_results`, for ``why()`` and the missing list (moved out of ``why.py``)."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

import torch

from ..graph import WhyReason


def cut_results(code: str, ns: Mapping[str, Any] | None = None) -> dict[str, tuple[WhyReason, str]]:
    """Variable -> (reason, why its value has no graph), for the variables a cell's code last assigns under
    ``torch.no_grad()`` (a ``with`` block, ``torch.set_grad_enabled(False)``, or a call of a function
    the cell decorates with ``@torch.no_grad()``), or straight from ``.detach()`` / ``.data``, or from
    ``.item()`` / ``.tolist()`` / ``.numpy()`` anywhere in the expression: such a
    tensor is a plain one, and nothing on it tells these from "none of its inputs required grad"
    (inference_mode does tell). Not the locals of functions the cell defines; ``enable_grad`` inside
    the block turns grad mode back on.

    ``ns`` (the cell's namespace) confirms a conversion by values: it is named only where what it
    converts reads a tensor that requires grad (or a module with such a parameter) and detaches nothing
    (``torch.tensor(np.arange(3).tolist())`` or ``x.sum().item()`` of an ``x`` without grad are no cut).
    Without ``ns``, the code alone decides."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {}
    decorated = {f.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 and any(_grad_context(d) == "no_grad" for d in f.decorator_list)}  # fmt: skip
    found: dict[str, tuple[WhyReason, str] | None] = {}
    _off_in(tree.body, None, decorated, found, ns)
    return {name: text for name, text in found.items() if text is not None}


_Found = dict[str, "tuple[WhyReason, str] | None"]  # variable -> its last assignment's cut (None: none)


def _grad_context(expr: ast.expr) -> str | None:
    """What an expression used as a context manager or decorator does to grad mode: ``no_grad``,
    ``on`` (enable_grad, set_grad_enabled(True)), ``other`` (inference_mode), or None."""
    call = expr if isinstance(expr, ast.Call) else None
    func = call.func if call is not None else expr
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    args = call.args if call is not None else []
    flag = args[0].value if args and isinstance(args[0], ast.Constant) else None
    if name == "no_grad" or (name == "set_grad_enabled" and flag is False):
        return "no_grad"
    if name == "enable_grad" or (name == "set_grad_enabled" and flag is True):
        return "on"
    if name == "inference_mode":
        return "other"
    return None


def _off_in(body: list[ast.stmt], block: ast.expr | None, decorated: set[str], found: _Found,
            ns: Mapping[str, Any] | None) -> None:  # fmt: skip
    """Walk the cell's own statements in order; ``block``: the no_grad context manager of the
    innermost ``with`` that sets grad mode around them (None: grad mode as the cell started)."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(stmt, ast.With):
            kinds = [(k, i.context_expr) for i in stmt.items if (k := _grad_context(i.context_expr))]
            kind, expr = kinds[-1] if kinds else (None, None)
            _off_in(stmt.body, block if kind is None else expr if kind == "no_grad" else None, decorated, found, ns)
            continue
        for name in _targets(stmt):
            found[name] = _off_text(name, stmt, block, decorated, ns)
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, field, None)
            if isinstance(inner, list) and all(isinstance(x, ast.stmt) for x in inner):
                _off_in(inner, block, decorated, found, ns)
        for handler in getattr(stmt, "handlers", None) or ():
            _off_in(handler.body, block, decorated, found, ns)


def _targets(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        exprs = list(stmt.targets)
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        exprs = [stmt.target]
    else:
        return []
    return [n.id for e in exprs for n in ast.walk(e) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]


def _short(node: ast.AST, limit: int = 60) -> str:
    lines = ast.unparse(node).splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _off_text(name: str, stmt: ast.stmt, block: ast.expr | None, decorated: set[str],
              ns: Mapping[str, Any] | None) -> tuple[WhyReason, str] | None:  # fmt: skip
    head = f"{name} has requires_grad=False because"
    if block is not None:
        return "no_grad", (f"{head} it was computed under torch.no_grad() (`{_short(stmt)}` inside `with "
                           f"{_short(block)}:`): autograd recorded no graph for it, even from tensors that require "
                           "grad. Compute it outside the no_grad block to get a graph.")  # fmt: skip
    value = getattr(stmt, "value", None)
    func = value.func if isinstance(value, ast.Call) else None
    detached = isinstance(func, ast.Attribute) and func.attr == "detach" and not value.args  # type: ignore[union-attr]
    if detached or (isinstance(value, ast.Attribute) and value.attr == "data"):
        how = "detach() returns" if detached else ".data is"
        return ("detach" if detached else "data"), (
            f"{head} it was detached (`{_short(stmt)}`): {how} a tensor that shares the values but has no graph. "
            "Use the tensor itself where you need its gradient.")  # fmt: skip
    number = _to_python(value, ns)
    if number is not None:
        return "detach", (
            f"{head} it was made from a Python number (`{_short(stmt)}`): {number} turns a tensor into a number "
            "(or a list or NumPy array), which has no graph, so a tensor made from it again has nothing behind it. "
            "Keep the value a tensor where you need its gradient.")  # fmt: skip
    if isinstance(func, ast.Name) and func.id in decorated:
        return "no_grad", (f"{head} it comes from {func.id}(), which the cell decorates with @torch.no_grad(): "
                           "autograd records nothing inside it, even from tensors that require grad. Remove the "
                           f"decorator (or compute it outside {func.id}) to get a graph.")  # fmt: skip
    return None


_CONVERSIONS = {"item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()"}


def _to_python(value: ast.AST | None, ns: Mapping[str, Any] | None) -> str | None:
    """How an assigned expression turns a tensor into Python numbers, as written (``.item()``), when it
    does anywhere inside (``torch.tensor(loss.item())``); else None. Not ``float()`` / ``int()``: the
    code does not say whether their argument was a tensor (the taint trace of ``why()`` does)."""
    for node in ast.walk(value) if value is not None else ():
        func = node.func if isinstance(node, ast.Call) and not node.args else None
        if isinstance(func, ast.Attribute) and func.attr in _CONVERSIONS and _needs_grad(func.value, ns):
            return _CONVERSIONS[func.attr]
    return None


def _needs_grad(converted: ast.expr, ns: Mapping[str, Any] | None) -> bool:
    """Whether the expression a conversion applies to reads, in ``ns``, a tensor that requires grad or
    a module with a parameter that does, and detaches nothing on the way (True without ``ns``)."""
    if ns is None:
        return True
    nodes = list(ast.walk(converted))
    if any(isinstance(n, ast.Attribute) and n.attr in ("detach", "data", "numpy") for n in nodes):
        return False
    for n in nodes:
        value = ns.get(n.id) if isinstance(n, ast.Name) else None
        if isinstance(value, torch.Tensor) and value.requires_grad:
            return True
        if isinstance(value, torch.nn.Module) and any(p.requires_grad for p in value.parameters()):
            return True
    return False
