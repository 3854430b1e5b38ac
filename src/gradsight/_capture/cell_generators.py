"""The torch and NumPy generators a ``%%gradsight`` cell can reach (:func:`generators_in`): ``cell_start``
puts their first states back for each re-run, and the user's after it. A generator's state is small:
no budget.
"""

from __future__ import annotations

import types
from collections.abc import Collection, Mapping
from typing import Any

import torch

from .guard import generator_types, generators_reached
from .namespace_guard import names_reached, one_level_in


def generators_in(ns: Mapping[str, Any], used: Collection[str]) -> list[Any]:
    """The torch and NumPy generators a cell using ``used`` can reach: a value it names (and those of
    the globals of the functions it names), up to two levels inside one (``aug.rng``, a DataLoader's
    ``loader.sampler.generator``, ``loader.dataset.g``), a module's own (a noise layer's), and those the
    functions it names reach (:func:`guard.generators_reached`).
    Never raises."""
    kinds = generator_types()
    found: dict[int, Any] = {}
    functions: list[Any] = []
    for name in names_reached(ns, used):
        value = ns[name]
        try:
            if type(value) in kinds:  # type(), as guard.generators_reached: no __class__ property runs
                found[id(value)] = value
            elif isinstance(value, (types.FunctionType, types.MethodType)):
                functions.append(value)
            elif isinstance(value, torch.nn.Module):
                found.update((id(v), v) for m in value.modules() for v in vars(m).values() if type(v) in kinds)
            elif _looked_into(value):  # two levels in: a DataLoader's sampler's, a dataset's own (loader.dataset.g)
                for inner, v in one_level_in(name, value):
                    if type(v) in kinds:
                        found[id(v)] = v
                    elif _looked_into(v):
                        found.update((id(w), w) for _, w in one_level_in(inner, v, limit=64) if type(w) in kinds)
        except Exception:  # an object that cannot be looked into: none of its generators
            continue
    found.update((id(g), g) for g in generators_reached(functions))
    return list(found.values())


def _looked_into(value: Any) -> bool:
    """An object whose items or attributes may hold a generator (not a tensor, a module, a function or
    a plain value: a module's are found through ``modules()``)."""
    plain = (torch.Tensor, torch.nn.Module, str, bytes, int, float, type, types.ModuleType, types.FunctionType,
             types.MethodType)  # fmt: skip
    return not isinstance(value, plain) and type(value).__module__ != "numpy"
