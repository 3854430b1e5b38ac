"""What-if toggles: what a re-run changes, validated against what the debugger can name.

    dbg.rerun(requires_grad={"layer1.weight": False}, no_grad=["layer2"], detach=["layer1"])

``requires_grad`` maps leaf names (parameters, named inputs, a cell's variables) or module paths
(the whole subtree) to a flag; ``no_grad`` / ``inference_mode`` are ``True`` (the whole step) or
module paths; ``detach`` lists module paths (their output is detached), node ids of a runnable or live debugger
(the output of the call that made the node is detached: the edges into it are cut) or, in a
``%%gradsight`` cell, variable names (detached right after the cell assigns them). Torch-free.

>>> Toggles(requires_grad={"w": False}).label
'w.requires_grad=False'
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any


class ToggleError(ValueError):
    """A toggle naming something the debugger does not know, with what it does know."""


@dataclass(frozen=True)
class Toggles:
    requires_grad: Mapping[str, bool] = field(default_factory=dict)
    no_grad: bool | tuple[str, ...] = False
    inference_mode: bool | tuple[str, ...] = False
    detach: tuple[str, ...] = ()
    apply: bool = False  # keep requires_grad changes on the user's tensors after the run

    @property
    def empty(self) -> bool:
        return not (self.requires_grad or self.no_grad or self.inference_mode or self.detach)

    @property
    def label(self) -> str:
        """A short description for the run history."""
        parts = [f"{k}.requires_grad={v}" for k, v in self.requires_grad.items()]
        for kind, value in (("no_grad", self.no_grad), ("inference_mode", self.inference_mode)):
            if value is True:
                parts.append(f"whole step under {kind}")
            elif value:
                parts.append(f"{kind}({', '.join(value)})")
        if self.detach:
            parts.append(f"detach({', '.join(self.detach)})")
        return "; ".join(parts) or "no toggles"

    def to_wire(self) -> dict[str, Any]:
        return {
            "requires_grad": dict(self.requires_grad),
            "no_grad": self.no_grad if isinstance(self.no_grad, bool) else list(self.no_grad),
            "inference_mode": self.inference_mode
            if isinstance(self.inference_mode, bool)
            else list(self.inference_mode),
            "detach": list(self.detach),
            "apply": self.apply,
        }


def make_toggles(*, requires_grad: Any = None, no_grad: Any = False, inference_mode: Any = False, detach: Any = (),
                 apply: Any = False, leaves: Collection[str] = (), modules: Collection[str] = (),
                 variables: Collection[str] = (), nodes: Collection[str] = (),
                 aliases: Mapping[str, str] | None = None) -> Toggles:  # fmt: skip
    """Validate user (or view) input; raise :class:`ToggleError` saying what the names can be.

    ``aliases`` maps the other paths of a shared parameter (tied weights) to the leaf name it is
    shown under (``_capture.names.leaf_aliases``), and a cell's other paths to a leaf or module to the
    name its graph shows (``_capture.cell_scope``): a toggle may use either, and is kept under the shown one.
    """
    leaf_set, module_set, variable_set = set(leaves), set(modules), set(variables)
    alias = {} if aliases is None else aliases
    rg = {} if requires_grad is None else requires_grad
    if not isinstance(rg, Mapping) or not all(isinstance(k, str) and isinstance(v, bool) for k, v in rg.items()):
        raise ToggleError('requires_grad must be a dict of name -> True/False, e.g. {"layer1.weight": False}')
    flags: dict[str, bool] = {}
    said: dict[str, str] = {}  # leaf name -> the name the user gave for it
    for name, value in rg.items():
        if name in leaf_set and name in module_set:
            raise ToggleError(_ambiguous(name, leaves))
        key = name
        if name not in leaf_set and name not in module_set and name not in variable_set:
            if name not in alias:
                raise ToggleError(_unknown_leaf(name, leaves, modules, variables))
            key = alias[name]
        if key in flags and flags[key] != value:
            one = (
                "one module (reached by both paths)"
                if key in module_set
                else "one tensor (a parameter shared under both names, as tied weights are)"
            )
            raise ToggleError(
                f"requires_grad: {said[key]!r} and {name!r} are {one}, set to {flags[key]} and {value}: "
                "give it one value"
            )
        flags[key], said[key] = value, name
    if not isinstance(apply, bool):
        raise ToggleError("apply must be True or False")
    kinds = [k for k, names in (("module", modules), ("variable", variables), ("node id", nodes)) if names]
    # another path of a module (a cell's wrapper of it) is kept under the name the graph shows
    module_alias = {path: shown for path, shown in alias.items() if shown in module_set and path not in module_set}
    return Toggles(
        requires_grad=flags,
        no_grad=_scope("no_grad", no_grad, modules, module_set, module_alias),
        inference_mode=_scope("inference_mode", inference_mode, modules, module_set, module_alias),
        detach=_detach(detach, [*modules, *variables, *nodes], kinds, module_alias),
        apply=apply,
    )


# Where the full lists are, for messages that cannot show them all.
_LEAVES_AT = "dbg.graph.controls.leaves and .modules list them"
_MODULES_AT = "dbg.graph.controls.modules lists them"
_DETACH_AT = "dbg.graph.controls.modules and .variables list them; node ids: [n.id for n in dbg.graph.nodes]"


def _scope(kind: str, value: Any, modules: Collection[str], known: set[str],
           alias: Mapping[str, str]) -> bool | tuple[str, ...]:  # fmt: skip
    if isinstance(value, bool):
        return value
    names = _name_list(value)
    if names is None:
        raise ToggleError(
            f"{kind} must be True (the whole step), False, or a list of module paths, e.g. {kind}=['layer1']; "
            f"got {type(value).__name__}"
        )
    for name in names:
        if name not in known and name not in alias:
            raise ToggleError(f"{kind}: no module named {name!r}" + suggest(name, modules, _MODULES_AT))
    return tuple(dict.fromkeys(alias.get(name, name) for name in names))


def _detach(value: Any, known: list[str], kinds: list[str], alias: Mapping[str, str]) -> tuple[str, ...]:
    if value is None or value is False:
        return ()
    names = _name_list(value)
    if names is None:
        got = "True (to cut the whole step, use no_grad=True)" if value is True else type(value).__name__
        raise ToggleError(
            "detach must be a list of names (module paths, node ids or a cell's variables), e.g. detach=['layer1'], "
            f"or False for none; got {got}"
        )
    known_set = set(known)
    what = _either(kinds, quote=False) or "name"
    for name in names:
        if name not in known_set and name not in alias:
            raise ToggleError(f"detach: no {what} named {name!r}" + suggest(name, known, _DETACH_AT))
    return tuple(dict.fromkeys(name if name in known_set else alias[name] for name in names))


def _name_list(value: Any) -> list[str] | None:
    """A str, or a list / tuple / set of str, as a list (a set sorted); None for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=str)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def _unknown_leaf(name: str, leaves: Collection[str], modules: Collection[str], variables: Collection[str]) -> str:
    computed = _parametrized(name, leaves)
    if computed:
        module = name.rpartition(".")[0]
        whole = f", or the module {module!r}" if module else ""
        listed = " and ".join(repr(c) for c in computed)
        return (
            f"requires_grad: {name!r} is no leaf: a parametrization (register_parametrization, weight_norm, "
            f"spectral_norm) computes it from {listed} in every forward; toggle "
            f"{'that' if len(computed) == 1 else 'those'}{whole}"
        )
    known = [*leaves, *modules, *variables]
    return f"requires_grad: no leaf or module named {name!r}" + suggest(name, known, _LEAVES_AT)


def _parametrized(name: str, leaves: Collection[str]) -> list[str]:
    """The leaves a parametrization computes ``name`` from (``0.weight`` → ``0.parametrizations.weight.original``;
    the older ``torch.nn.utils`` hooks: ``0.weight_orig``, ``0.weight_g`` / ``0.weight_v``)."""
    module, _, attr = name.rpartition(".")
    if not attr:
        return []
    prefix = f"{module}." if module else ""
    new = f"{prefix}parametrizations.{attr}.original"
    found = sorted({leaf for leaf in leaves if leaf == new or (leaf.startswith(new) and leaf[len(new) :].isdigit())})
    old = [f"{prefix}{attr}{suffix}" for suffix in ("_orig", "_g", "_v")]
    known = set(leaves)
    return found or [leaf for leaf in old if leaf in known]  # weight_g before weight_v: magnitude, direction


def _ambiguous(name: str, leaves: Collection[str]) -> str:
    inside = list(dict.fromkeys(leaf for leaf in leaves if leaf.startswith(name + ".")))
    shown = ", ".join(repr(n) for n in inside[:4]) + (", …" if len(inside) > 4 else "")
    module = f"name its parameters instead ({shown})" if inside else "name its parameters instead"
    return (
        f"requires_grad: {name!r} is ambiguous: it names a leaf (a tensor called {name!r}) and the module {name!r} "
        f"(its whole subtree). For the module, {module}; for the tensor, set its requires_grad yourself before "
        f"re-running, or give it a name no module has (a model's input: inputs=(x,) names it 'input[0]')"
    )


def suggest(name: str, known: Collection[str], where: str, shown: int = 12) -> str:
    """``; did you mean …?`` with the close matches first, then the known names: all of them when
    there are few, else how many and where to find them."""
    names = list(dict.fromkeys(known))
    if not names:
        return "; none are known"
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    out = f"; did you mean {_either(close)}?" if close else ""
    if len(names) <= shown:
        listed = ", ".join(repr(n) for n in names)
        return f"{out} Known: {listed}" if close else f"; known: {listed}"
    if close:
        return f"{out} ({len(names)} names are known; {where})"
    return f"; known: {', '.join(repr(n) for n in names[:shown])}, … ({len(names)} in all; {where})"


def _either(names: list[str], quote: bool = True) -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    shown = [repr(n) if quote else n for n in names]
    return " or ".join([", ".join(shown[:-1]), shown[-1]]) if len(shown) > 1 else "".join(shown)
