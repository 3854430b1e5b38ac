"""What a ``%%gradsight`` cell's code does to the user's objects that a re-run would do again, read from
its AST (:func:`cell_edits`): the tensors it edits in place (``images /= 255``, ``mask[0] = 0``,
``x.clamp_(0, 1)``, ``w.data = ...``, ``torch.nn.init.zeros_(w)``, ``out=``), the optimizers and LR
schedulers it steps (``opt.step()``, ``scaler.step(opt)``) and the GradScalers it steps or updates, and
the iterators it takes an item from (``next(it)``).

Each is an expression chain — a name, then attributes and constant subscripts (``batch["x"]``,
``model.weight.data``) — resolved against the namespace without running the user's code
(:func:`resolve`: instance dicts, modules' parameters, buffers and submodules, and the items of
lists, tuples and dicts; no property or ``__getattr__`` runs). An edit made in a helper function the
cell calls is not seen.

>>> edits = cell_edits("images /= 255\\nmask[0] = 0\\nopt.step()\\nx = next(it)")
>>> [[ast.unparse(c) for c in chains] for chains in (edits.in_place, edits.steps, edits.nexts)]
[['images', 'mask'], ['opt'], ['it']]
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

_GRAD = frozenset({"grad"})  # a chain through .grad edits a gradient: cell_grads starts re-runs from the first one


@dataclass
class CellEdits:
    in_place: list[ast.expr] = field(default_factory=list)  # chains whose first tensor the cell edits in place
    steps: list[ast.expr] = field(default_factory=list)  # chains the cell calls .step() / .update() on, or passes
    # to .step() (``scaler.step(opt)``)
    nexts: list[ast.expr] = field(default_factory=list)  # chains the cell calls next() on


def cell_edits(code: str) -> CellEdits:
    """The chains ``code`` edits in place, steps and takes items from (see the module's docstring).
    A name the cell binds with ``=`` (or a ``for``, ``with``, ``:=``) before the edit is the cell's
    own tensor then, not the user's: ``x = torch.zeros(3); x += 1`` edits nothing of the user's."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return CellEdits()
    bound = _first_bindings(tree)
    local = _function_locals(tree)
    out = CellEdits()

    def edit(chain: ast.expr | None, node: ast.AST, whole: bool = True) -> None:
        if chain is None:
            return
        if not whole:  # an assignment rebinds the chain's last part: what it is taken from is edited
            if not isinstance(chain, (ast.Attribute, ast.Subscript)):
                return
            chain = chain.value
        root = _root(chain)
        if root is not None and root not in local.get(id(node), ()) and _line(node) <= bound.get(root, 10**9):
            out.in_place.append(chain)

    def reached(chain: ast.expr, node: ast.AST) -> bool:  # the user's object, not a function's local
        root = _root(chain)
        return root is not None and root not in local.get(id(node), ())

    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign):
            edit(node.target, node)  # images /= 255: in place on a tensor
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                    edit(t, node, whole=False)  # mask[0] = 0, x.data = y
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if isinstance(func, ast.Attribute) and _in_place(name):
                edit(func.value, node)  # x.clamp_(0, 1)
                if node.args and _root(func.value) in _FUNCTION_ROOTS:
                    edit(node.args[0], node)  # torch.nn.init.zeros_(w)
            elif isinstance(func, ast.Attribute) and name in _STEPS and reached(func.value, node):
                out.steps.append(func.value)  # opt.step(), scaler.update()
                if name == "step" and node.args and reached(node.args[0], node):
                    out.steps.append(node.args[0])  # scaler.step(opt) steps opt
            elif isinstance(func, ast.Name) and name == "next" and node.args and reached(node.args[0], node):
                out.nexts.append(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "out":
                    edit(keyword.value, node)  # torch.add(a, b, out=c)
    return out


_FUNCTION_ROOTS = frozenset({"torch", "nn", "init", "F"})
# what changes an optimizer's, scheduler's or GradScaler's state (``scaler.update()`` grows its scale); the
# chains are kept only where they name one (``cell_start.stepped``): ``d.update(x)`` on a dict is not
_STEPS = frozenset({"step", "update"})


def _in_place(name: str) -> bool:
    return name.endswith("_") and not name.startswith("_")


def _root(chain: ast.expr) -> str | None:
    """The name a chain of attributes and subscripts starts from; None if anything else is in it."""
    while isinstance(chain, (ast.Attribute, ast.Subscript)):
        chain = chain.value
    return chain.id if isinstance(chain, ast.Name) else None


def _line(node: ast.AST) -> int:
    return int(getattr(node, "lineno", 0))


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _in_cell_scope(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes of the cell's own scope: not inside the functions, lambdas and classes it defines."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node) if not isinstance(child, _SCOPES))


def _function_locals(tree: ast.AST) -> dict[int, frozenset[str]]:
    """For each node inside a function or lambda the cell defines: the names local there (its
    parameters and the names it binds, not those it declares ``global``), and those of the functions
    around it; their edits are of the function's own objects."""
    out: dict[int, frozenset[str]] = {}
    todo: list[tuple[ast.AST, frozenset[str]]] = [(tree, frozenset())]
    while todo:
        node, outer = todo.pop()
        names = outer
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            arguments = node.args
            params = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
            declared = {n for g in ast.walk(node) if isinstance(g, (ast.Global, ast.Nonlocal)) for n in g.names}
            stored = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            names = outer | {a.arg for a in params if a is not None} | (stored - declared)
        for child in ast.iter_child_nodes(node):
            if names:
                out[id(child)] = names
            todo.append((child, names))
    return out


def _first_bindings(tree: ast.AST) -> dict[str, int]:
    """The first line at which the cell binds each name anew (``=``, ``for``, ``with ... as``, ``:=``)
    in its own scope."""
    lines: dict[str, int] = {}
    for node in _in_cell_scope(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.For, ast.AsyncFor, ast.NamedExpr)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        for target in targets:
            for name in (n for n in ast.walk(target) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)):
                lines[name.id] = min(lines.get(name.id, 10**9), _line(node))
    return lines


_MISSING = object()


def resolve(chain: ast.expr, ns: Mapping[str, Any], *, first_tensor: bool = False) -> Any:
    """The object ``chain`` names in ``ns`` (None if it cannot be read without running code), or with
    ``first_tensor`` the first tensor along it (``model.weight`` for ``model.weight.data``: the
    storage an edit through the rest of the chain changes). Never raises."""
    parts: list[ast.expr] = []
    node = chain
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        parts.append(node)
        node = node.value
    if not isinstance(node, ast.Name) or node.id.startswith("_"):
        return None
    value = ns.get(node.id, _MISSING)
    try:
        for part in reversed(parts):
            if first_tensor and isinstance(value, torch.Tensor):
                return value
            if isinstance(part, ast.Attribute):
                if part.attr in _GRAD:
                    return None
                value = _attribute(value, part.attr)
            elif isinstance(part, ast.Subscript) and isinstance(part.slice, ast.Constant):
                value = _item(value, part.slice.value)
            else:  # a subscript by a variable or a slice: only a tensor before it (first_tensor) is known
                return None
            if value is _MISSING:
                return None
    except Exception:  # an object that does not read like a container: nothing found
        return None
    if value is _MISSING or (first_tensor and not isinstance(value, torch.Tensor)):
        return None
    return value


def _attribute(obj: Any, name: str) -> Any:
    if isinstance(obj, torch.nn.Module):
        for held in (obj._parameters, obj._buffers, obj._modules):
            if name in held:
                return held[name]
    attributes = getattr(obj, "__dict__", None)
    return attributes.get(name, _MISSING) if isinstance(attributes, dict) else _MISSING


def _item(obj: Any, key: Any) -> Any:
    if isinstance(obj, torch.nn.Module):  # Sequential, ModuleList (an int) and ModuleDict (a str)
        if isinstance(key, int):
            modules = list(obj._modules.values())
            return modules[key] if -len(modules) <= key < len(modules) else _MISSING
        return obj._modules.get(key, _MISSING) if isinstance(key, str) else _MISSING
    if type(obj) in (list, tuple) and isinstance(key, int) and -len(obj) <= key < len(obj):
        return obj[key]
    if type(obj) is dict:
        return obj.get(key, _MISSING)
    return _MISSING
