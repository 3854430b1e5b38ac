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
                 variables: Collection[str] = (), nodes: Collection[str] = ()) -> Toggles:  # fmt: skip
    """Validate user (or view) input; raise :class:`ToggleError` saying what the names can be."""
    rg = {} if requires_grad is None else requires_grad
    if not isinstance(rg, Mapping) or not all(isinstance(k, str) and isinstance(v, bool) for k, v in rg.items()):
        raise ToggleError('requires_grad must be a dict of name -> True/False, e.g. {"layer1.weight": False}')
    for name in rg:
        if name not in leaves and name not in modules and name not in variables:
            raise ToggleError(f"requires_grad: no leaf or module named {name!r}; known: {_known(leaves, modules)}")
    if not isinstance(apply, bool):
        raise ToggleError("apply must be True or False")
    return Toggles(
        requires_grad=dict(rg),
        no_grad=_scope("no_grad", no_grad, modules),
        inference_mode=_scope("inference_mode", inference_mode, modules),
        detach=_names("detach", detach, set(modules) | set(variables) | set(nodes)),
        apply=apply,
    )


def _scope(kind: str, value: Any, modules: Collection[str]) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    return _names(kind, value, modules)


def _names(kind: str, value: Any, known: Collection[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ToggleError(f"{kind} must be True/False or a list of module names")
    for name in value:
        if name not in known:
            raise ToggleError(f"{kind}: no module or variable named {name!r}; known: {_known((), known)}")
    return tuple(dict.fromkeys(value))


def _known(leaves: Collection[str], modules: Collection[str]) -> str:
    names = list(dict.fromkeys([*leaves, *modules]))
    shown = ", ".join(repr(n) for n in names[:12])
    return shown + (f" … ({len(names)} in all)" if len(names) > 12 else "") if names else "(none)"
