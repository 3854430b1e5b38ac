"""The torch and NumPy generators a ``%%gradsight`` cell can reach (:func:`generators_in`), and their
states before its first run, which re-runs start from (:class:`FirstGenerators`, for ``cell_start``). A
generator's state is small: no budget.

A later cell may draw from one of them, or re-seed it (``g.manual_seed(7)``): as with a tensor a later
cell edits (``cell_changed``), the user's newer state wins. The next re-run draws from it as it is, and
its graph names it once; later re-runs draw from it as it is then. Telling a later cell's draws from the
first run's needs a mark of each as the first run left it (a checksum of its state), re-read after each
re-run's give-back. Only a generator the first run drew from has a starting state that matters: one it
reaches but did not move (a DataLoader it only took the length of) is never named.

>>> g = torch.Generator().manual_seed(5)
>>> first = FirstGenerators({"g": g}, ["g"])
>>> _ = torch.randn(2, generator=g)  # the cell's first run
>>> first.settle()
>>> _ = g.manual_seed(7)  # a later cell
>>> first.changed([g])
['g']
"""

from __future__ import annotations

import pickle
import types
import zlib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import torch

from .guard import generator_state, generator_types, generators_reached, set_generator_state, unseen
from .namespace_guard import names_reached, one_level_in


def generators_in(ns: Mapping[str, Any], used: Collection[str]) -> list[Any]:
    """The torch and NumPy generators a cell using ``used`` can reach (:func:`named_generators`).
    Never raises."""
    return list(named_generators(ns, used).values())


def named_generators(ns: Mapping[str, Any], used: Collection[str]) -> dict[str, Any]:
    """Name → each torch and NumPy generator a cell using ``used`` can reach, under its first name: a
    value it names (and those of the globals of the functions it names), up to two levels inside one
    (``aug.rng``, a DataLoader's ``loader.sampler.generator``, ``loader.dataset.g``), a module's own
    (``model.noise.gen``, a noise layer's), and those the functions it names reach
    (:func:`guard.generators_reached`: "a generator draw() reaches"). Never raises."""
    kinds = generator_types()
    found: dict[int, tuple[str, Any]] = {}
    functions: list[tuple[str, Any]] = []

    def add(name: str, value: Any) -> None:
        if type(value) in kinds:  # type(), as guard.generators_reached: no __class__ property runs
            found.setdefault(id(value), (name, value))

    for name in names_reached(ns, used):
        value = ns[name]
        try:
            if type(value) in kinds:
                add(name, value)
            elif isinstance(value, (types.FunctionType, types.MethodType)):
                functions.append((name, value))
            elif isinstance(value, torch.nn.Module):
                for path, m in value.named_modules():
                    for attr, v in vars(m).items():
                        add(".".join(p for p in (name, path, attr) if p), v)
            elif _looked_into(value):  # two levels in: a DataLoader's sampler's, a dataset's own (loader.dataset.g)
                for inner, v in one_level_in(name, value):
                    add(inner, v)
                    if type(v) not in kinds and _looked_into(v):
                        for deeper, w in one_level_in(inner, v, limit=64):
                            add(deeper, w)
        except Exception:  # an object that cannot be looked into: none of its generators
            continue
    for name, fn in functions:
        for g in generators_reached([fn]):
            add(f"a generator {name}() reaches", g)
    return dict(found.values())


def _looked_into(value: Any) -> bool:
    """An object whose items or attributes may hold a generator (not a tensor, a module, a function or
    a plain value: a module's are found through ``modules()``)."""
    plain = (torch.Tensor, torch.nn.Module, str, bytes, int, float, type, types.ModuleType, types.FunctionType,
             types.MethodType)  # fmt: skip
    return not isinstance(value, plain) and type(value).__module__ != "numpy"


class FirstGenerators:
    """The generators a cell reaches, each with its name and state before the cell's first run (held:
    NumPy's take no weak reference, and a state is a few kB); see the module's docstring."""

    def __init__(self, ns: Mapping[str, Any], used: Collection[str]) -> None:
        self._first: dict[int, tuple[str, Any, Any]] = {}  # id -> (name, generator, its state)
        for name, g in named_generators(ns, used).items():
            try:
                self._first[id(g)] = (name, g, generator_state(g))
            except Exception:  # a state that cannot be read: it goes on from where it is
                continue
        self._left: dict[int, int] = {}  # id -> the mark of a generator the first run drew from
        self._untold: dict[int, tuple[str, Any]] = {}  # id -> (name, generator): moved, no graph shown has said so

    def settle(self) -> None:
        """After the first run: how it left the generators it drew from. Never raises."""
        for i, (_, g, state) in self._first.items():
            mark = _mark(g)
            if mark is not None and mark != _mark_of_state(state):
                self._left[i] = mark

    def changed(self, now: Iterable[Any]) -> list[str]:
        """The names of the generators in ``now`` (those a re-run reaches) that moved since the first run
        (or the last re-run's give-back): from now on re-runs draw from them as they are. Each re-run
        names them until one whose graph the user sees has (:meth:`told`): a why() trace re-runs the cell
        too, and its graph is never shown."""
        names = []
        for g in now:
            kept = self._first.get(id(g))
            mark = self._left.get(id(g))
            if kept is not None and kept[1] is g and mark is not None and _mark(g) != mark:
                self._untold[id(g)] = (kept[0], g)
                del self._first[id(g)], self._left[id(g)]
            untold = self._untold.get(id(g))
            if untold is not None and untold[1] is g:
                names.append(untold[0])
        return sorted(names)

    def told(self) -> None:
        """A re-run's graph that named the moved generators was shown: later re-runs name them no more."""
        self._untold.clear()

    def start(self, now: Iterable[Any]) -> None:
        """Before a re-run: the generators in ``now`` as the first run found them."""
        for g in now:
            kept = self._first.get(id(g))
            if kept is not None and kept[1] is g:
                try:
                    set_generator_state(g, kept[2])
                except Exception:  # a generator of another device now: it goes on from where it is
                    continue

    def left(self) -> None:
        """After a re-run's give-back: the marks again (a state that could not go back moved for good)."""
        for i in self._left:
            mark = _mark(self._first[i][1])
            if mark is not None:
                self._left[i] = mark


def _mark(g: Any) -> int | None:
    try:
        return int(_mark_of_state(generator_state(g)))
    except Exception:  # a state that cannot be read now: never said to have moved
        return None


@unseen  # a re-run's start may be a taint trace's (why.py): this read is not the user's code
def _mark_of_state(state: Any) -> int:
    """A checksum of a generator's state: a torch one is a byte tensor, a NumPy one a dict of numbers
    and arrays (pickled alike for alike states)."""
    if isinstance(state, torch.Tensor):
        return zlib.crc32(state.numpy().tobytes())
    return zlib.crc32(pickle.dumps(state))
