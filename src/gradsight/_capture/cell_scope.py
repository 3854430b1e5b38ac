"""The names a ``%%gradsight`` cell's graph shows its leaves and modules under, and what its re-run
toggles can name (:func:`scope_of`).

A cell's graph names a parameter and a module by their first path in the user's namespace
(:func:`namespace_leaf_names`, :func:`module_paths`), whichever name the cell reached them by: a cell
that calls ``wrapped = Wrapper(model)`` or ``cmodel = torch.compile(model)`` shows ``model.0.weight``.
Its toggles take the name the graph shows, so that a box the view draws on a node and a name copied
from the graph reach the tensor they name; the path through the cell's own variable
(``wrapped.inner.0.weight``) is an alias of it, accepted and kept under the graph's name.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from ..toggles import Toggles, suggest
from .names import leaf_names_from_params, module_names, plain_name
from .namespace_guard import with_helpers

_T = TypeVar("_T")


def namespace_leaf_names(ns: Mapping[str, Any]) -> dict[torch.Tensor, str]:
    """The name each leaf of ``ns`` is shown under: a module's parameters ``<variable>.<path>`` first
    (the path as the user wrote it, without ``torch.compile``'s ``_orig_mod``), then the leaf tensors
    bound to a name (underscored names are not the user's).

    >>> lin = torch.nn.Linear(2, 1)
    >>> names = namespace_leaf_names({"w": lin.weight, "model": torch.nn.Sequential(lin)})
    >>> names[lin.weight], names[lin.bias]
    ('model.0.weight', 'model.0.bias')
    """
    names: dict[torch.Tensor, str] = {}
    for name, v in ns.items():
        if name.startswith("_"):
            continue
        if isinstance(v, torch.nn.Module):
            for pname, p in v.named_parameters():
                names.setdefault(p, f"{name}.{plain_name(pname)}")
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.Tensor) and v.is_leaf:
            names.setdefault(v, name)
    return names


def module_paths(ns: Mapping[str, Any]) -> dict[int, str]:
    """id(module) -> its path from the namespace, as :func:`namespace_leaf_names` names parameters
    (``model.layer1`` for ``model.layer1.weight``; a compiled model and the model it wraps share one)."""
    paths: dict[int, str] = {}
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.nn.Module):
            for sub, m in module_names(v):
                paths.setdefault(id(m), f"{name}.{sub}" if sub else name)
    return paths


@dataclass(frozen=True)
class Scope:
    """The modules and leaves a cell's toggles name (by the names its graph shows them under), the
    names the cell assigns, and ``aliases``: the other paths the cell reaches them by → the name listed."""

    modules: dict[str, torch.nn.Module] = field(default_factory=dict)
    leaves: dict[str, torch.Tensor] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)

    def unreached(self, toggles: Toggles) -> str | None:
        """Why a re-run cannot apply ``toggles`` (a leaf the graph shows that the cell reaches through no
        name it uses: ``trainer.step()`` running the namespace's ``model``), or None. A name under a
        variable the cell assigns is the cell's own (the re-run binds it); one under a listed module is
        another path inside it (a tied weight)."""
        scoped = [s for s in (toggles.no_grad, toggles.inference_mode) if not isinstance(s, bool)]
        for name in dict.fromkeys([*toggles.requires_grad, *(n for s in scoped for n in s), *toggles.detach]):
            if name in self.leaves or name in self.modules or self._owned(name):
                continue
            known = [*self.leaves, *self.modules]
            return (
                f"{name!r} is in the graph, but the cell reaches it through none of the names it uses (the "
                "namespace's module or tensor of that name, used by an object the cell calls): a re-run cannot "
                "toggle it. Use that name in the cell, or toggle what the cell does use"
                + suggest(name, known, "dbg.graph.controls.leaves and .modules list them")
            )
        return None

    def _owned(self, name: str) -> bool:
        head = name.split(".")[0].split("[")[0]
        if head in self.assigned:
            return True
        return any(name.startswith(f"{module}.") for module in self.modules)


def scope_of(ns: Mapping[str, Any], used: Collection[str], assigned: set[str]) -> Scope:
    """The modules and leaves a cell using ``used`` (and the helper functions among them: their globals)
    reaches, by the names its graph shows (:func:`namespace_leaf_names`, :func:`module_paths`). A path
    stays listed as it is when the graph's name for its object is itself one the cell reaches (``L.weight``
    and ``A.0.weight`` of ``A = nn.Sequential(L)``: both the cell's) or when it is under a variable the
    cell assigns (the re-run binds a new object there, which the toggles under that name reach);
    otherwise it is listed under the graph's name and is an alias of it."""
    modules: dict[str, tuple[str, torch.nn.Module]] = {}  # path -> (the variable it starts at, module)
    leaves: dict[str, tuple[str, torch.Tensor]] = {}
    for name in sorted(with_helpers(ns, used)):
        value = ns.get(name)
        if isinstance(value, torch.nn.Module):
            modules.update({f"{name}.{sub}" if sub else name: (name, m) for sub, m in module_names(value)})
            leaves.update({f"{name}.{p}": (name, t) for t, p in leaf_names_from_params(value).items()})
        elif isinstance(value, torch.Tensor) and value.is_leaf and name not in assigned:
            leaves[name] = (name, value)
    aliases: dict[str, str] = {}
    paths = module_paths(ns)
    shown = namespace_leaf_names(ns)
    return Scope(
        modules=_renamed(modules, lambda m: paths.get(id(m)), assigned, aliases),
        leaves=_renamed(leaves, shown.get, assigned, aliases),
        assigned=assigned,
        aliases=aliases,
    )


def scope_key(ns: Mapping[str, Any], used: Collection[str]) -> tuple[Any, ...]:
    """What :func:`scope_of` reads from ``ns`` for a cell using ``used``, by identity: the names bound to a
    module (with each module's tree: its submodules' and parameters' names and ids), a tensor (leaf or not)
    or a function (its code: the globals a helper reaches), in the namespace's order. A re-run asks for its
    scope about ten times (the view's checks, the re-run itself, its controls, aliases and facts), and only
    this changes between those asks: an equal key is the same scope, at the cost of a walk of the modules'
    own dicts, without :func:`scope_of`'s paths. The ids are sound while the scope computed with them is
    kept: it holds the modules and leaves the cell reaches, so none of theirs is freed and reused."""
    reached = with_helpers(ns, used)
    key: list[Any] = []
    for name, value in ns.items():
        if name.startswith("_") and name not in reached:  # scope_of skips them unless the cell uses them
            continue
        if isinstance(value, torch.nn.Module):
            key.append((name, id(value), _tree(value)))
        elif isinstance(value, torch.Tensor):
            key.append((name, id(value), value.is_leaf))
        elif isinstance(value, types.FunctionType):
            key.append((name, id(value), id(value.__code__)))
    return tuple(key)


def _tree(root: torch.nn.Module) -> tuple[Any, ...]:
    """Each module of ``root`` once, in a fixed order: its submodules' and parameters' names, then the
    parameters' and submodules' ids (each count given by its names)."""
    out: list[Any] = []
    seen, stack = {id(root)}, [root]
    while stack:
        module = stack.pop()
        children, params = module._modules, module._parameters
        out += (tuple(children), tuple(params), *map(id, params.values()), *map(id, children.values()))
        for child in children.values():
            if child is not None and id(child) not in seen:  # shared (or a cycle): in the key once
                seen.add(id(child))
                stack.append(child)
    return tuple(out)


def _renamed(named: Mapping[str, tuple[str, _T]], graph_name: Callable[[_T], str | None], assigned: set[str],
             aliases: dict[str, str]) -> dict[str, _T]:  # fmt: skip
    """``named`` (path -> (variable, object)) by the graph's names; adds each path renamed to ``aliases``."""
    out: dict[str, _T] = {}
    for path, (variable, value) in named.items():
        shown = graph_name(value)
        if shown is None or shown == path or shown in named or variable in assigned:
            out[path] = value
        else:
            out.setdefault(shown, value)
            aliases[path] = shown
    return out


def renamed_aliases(tied: Iterable[tuple[str, str]], scope: Scope) -> dict[str, str]:
    """Tied weights' other paths (path -> the path shown for its module's variable) and the scope's
    aliases, every one pointing at the name listed."""
    out = {path: scope.aliases.get(shown, shown) for path, shown in tied}
    out.update(scope.aliases)
    return {path: name for path, name in out.items() if path != name}
