"""What a ``%%gradsight`` cell's re-runs start from (:class:`FirstState`), and what they leave.

A re-run executes the cell's code again on the user's own objects, so whatever the first run changed
in them, the re-run starts from — ``images /= 255`` divided the images again, ``opt.step()`` left the
parameters the first run stepped, ``torch.randn(..., generator=g)`` drew the next numbers of ``g`` —
and each re-run differentiated other values than the run shown, while doing it again to the user's
tensors. So before the first run, gradsight keeps:

- a copy of each tensor (or NumPy array) of the namespace the cell's code edits in place (``cell_edits``), and of the
  parameters and state of each optimizer it steps, within the debugger's memory budget (the copies
  count in the run's ``kept_bytes``, as ``cell_grads``' do); past it, a re-run starts from the values
  the first run left, and its graph says so. Optimizers get at most a quarter of the budget
  (:data:`OPTIMIZER_SHARE`): every run of a training cell pays for their copies, re-run or not (Adam's
  are three times the model), and the saved tensors the inspector shows need the rest;
- the state of each torch or NumPy generator the cell can reach: a namespace value it names, one level
  inside one (``aug.rng``), a generator of a module it names, or one a function it names reaches
  (``cell_generators``). A generator's state is small: no budget.

A re-run (:meth:`FirstState.started`) puts those in place, and afterwards puts back what the user's
objects held before it: the values and version counters of the tensors (a graph the user built before
the re-run still backwards) and the generators' states; an optimizer's both ways in its own group dicts
and state tensors (``cell_state_copies``: a user's ``opt.param_groups[0]`` stays live). An iterator the
cell takes ``next()`` from cannot be put back: the re-run's graph says it took another item.

What a later cell changed since the first run (``cell_changed``: a tensor's version counter, an array's
checksum, an optimizer's state or parameters moved) is the user's newer value: that re-run, and the later
ones, start from it as it is, and that re-run's graph names it.
"""

from __future__ import annotations

import ast
import copy
import sys
import weakref
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from .cell_changed import GENERATORS_CHANGED, Left, changed_note
from .cell_edits import CellEdits, cell_edits, resolve
from .cell_generators import FirstGenerators, generators_in
from .cell_moved import Moved, note
from .cell_state_copies import Held, params_of, start_from, state_cost
from .guard import (
    detached_copy,
    generator_state,
    put_back,
    set_generator_state,
    set_versions,
    unseen,
    version_of,
)
from .namespace_guard import has_state

UNCOPIED_EDITS = (
    "The cell edits {names} in place, and gradsight could not copy {them} before its first run within the memory "
    "budget (gs.options.memory_budget): this re-run started from the values the first run left and edited them once "
    "more, so it differentiates other values than the run shown. Your tensors are as they were before this re-run."
)
UNCOPIED_STEPS = (
    "The cell steps {names} (.step()), and gradsight could not copy the parameters and optimizer state before its "
    "first run within a quarter of the memory budget (gs.options.memory_budget; the saved tensors you inspect need "
    "the rest): this re-run started from the parameters that "
    "step left, not those of the run shown, so its gradients differ for that reason too. Your parameters and "
    "optimizer are as they were before this re-run."
)
TAKES_NEXT = (
    "The cell takes next({names}) from an iterator of yours: this re-run took the next item (an iterator cannot be "
    "given an item back), so it differentiates another batch than the run shown, and that item is gone from your "
    "iterator. Take the batch in a plain cell before the %%gradsight cell to re-run on the same one."
)


OPTIMIZER_SHARE = 4  # optimizers' copies take at most 1/4 of the budget


class FirstState:
    """Taken before a cell's first run (see the module's docstring); :meth:`started` around a re-run."""

    @unseen
    def __init__(self, code: str, ns: Mapping[str, Any], used: Collection[str], budget: int) -> None:
        self._edits = cell_edits(code)
        self._copies: dict[int, tuple[weakref.ref[torch.Tensor], torch.Tensor]] = {}
        self._uncopied: dict[int, weakref.ref[torch.Tensor]] = {}
        self._arrays: dict[int, tuple[weakref.ref[Any], Any]] = {}  # NumPy arrays: id -> (array, its copy or None)
        # id -> (optimizer, its state_dict; None: past the budget): weak, as the tensors (the model may go)
        self._optimizers: dict[int, tuple[weakref.ref[Any], Any | None]] = {}
        self._generators = FirstGenerators(ns, used)
        self._left = Left()  # how the first run (then each re-run) left what re-runs start from (settle)
        self._follows: dict[int, weakref.ref[Any]] = {}  # arrays changed since: re-runs start from them as they are
        self.kept_bytes = 0
        self._room = budget
        self._optimizer_room = budget // OPTIMIZER_SHARE
        with torch.no_grad():  # before the user's own run: nothing here may raise
            for t in edited(self._edits, ns):
                _quietly(self._keep, [t])
            for opt in stepped(self._edits, ns):
                _quietly(self._keep_optimizer, opt)
            for a in edited_arrays(self._edits, ns):
                _quietly(self._keep_array, a)
        self._moved = Moved(ns, used)  # version counters only: the edits cell_edits misses (settle)

    def _keep_array(self, a: Any) -> None:
        """A NumPy array the cell edits in place (``arr /= 255``), copied if it fits."""
        self._arrays[id(a)] = (weakref.ref(a), None)  # past the budget until copied
        if a.nbytes <= self._room:
            self._arrays[id(a)] = (weakref.ref(a), a.copy())
            self._room -= a.nbytes
            self.kept_bytes += a.nbytes

    def settle(self) -> None:
        """After the first run: the tensors it edited in place that this state did not copy (``cell_moved``).
        Never raises."""
        _quietly(self._moved.settle, self._covered)
        _quietly(self._generators.settle)
        refs = [*self._uncopied.values(), *(kept[0] for kept in (*self._copies.values(), *self._arrays.values(),
                                                                   *self._optimizers.values()))]  # fmt: skip
        for held in (ref() for ref in refs):
            if held is not None:
                self._left.record(held)

    def refused(self) -> str | None:
        """Why the cell cannot be re-run (its in-place edits grow a tensor's autograd history), or None."""
        return self._moved.rebased()

    def told(self) -> None:
        """A re-run's graph was shown: what a later cell changed, which it named, is named no more (a why()
        trace's re-run, never shown, leaves it to the next re-run's graph)."""
        self._left.told()
        self._generators.told()

    def _covered(self, t: torch.Tensor) -> bool:
        ref = self._uncopied.get(id(t))
        return self._first(t) is not None or (ref is not None and ref() is t)

    def _keep_optimizer(self, opt: Any) -> None:
        self._optimizers[id(opt)] = (weakref.ref(opt), None)  # past the budget until copied
        state = opt.state_dict()  # references to its tensors: copied only if they fit
        if self._keep(params_of(opt), state_cost(state), self._optimizer_room):
            try:
                self._optimizers[id(opt)] = (weakref.ref(opt), copy.deepcopy(state))
            except Exception:  # a copy that failed: its parameters start as the first run left them, and say so
                for p in params_of(opt):
                    self._uncopied.setdefault(id(p), weakref.ref(p))

    def _keep(self, tensors: list[torch.Tensor], extra: int = 0, share: int | None = None) -> bool:
        """Copy ``tensors`` (all or none) if they, and ``extra`` bytes more, fit in the room left (and in
        ``share``, the optimizers' room, for an optimizer's)."""
        new = {id(t): t for t in tensors if id(t) not in self._copies}
        cost = sum(_cost(t) for t in new.values()) + extra
        try:
            if cost > self._room or (share is not None and cost > share):
                raise MemoryError
            copies = {i: (weakref.ref(t), detached_copy(t)) for i, t in new.items()}  # all, or none if one raises
        except Exception:  # past the budget, or a copy that failed (out of memory): the re-run's graph says so
            for t in tensors:
                self._uncopied.setdefault(id(t), weakref.ref(t))
            return False
        self._copies.update(copies)
        self._room -= cost
        if share is not None:
            self._optimizer_room -= cost
        self.kept_bytes += cost
        return True

    def _array_started(self, a: Any) -> bool:
        kept = self._arrays.get(id(a))
        if kept is None:
            return False
        ref, first = kept
        held = ref()
        if held is None or held is not a or first is None or first.shape != held.shape or first.dtype != held.dtype:
            return False
        try:
            held[...] = first
        except Exception:  # read-only now: it starts as it is, and is named
            return False
        return True

    def _first(self, t: torch.Tensor) -> torch.Tensor | None:
        kept = self._copies.get(id(t))
        return kept[1] if kept is not None and kept[0]() is t else None

    @contextmanager
    def started(self, ns: Mapping[str, Any], used: Collection[str], held: Any = None) -> Iterator[list[str]]:
        """Around a re-run: the first run's starting values and generator states put in place, and
        what the user's objects hold now put back afterwards (values, version counters, states).
        ``held``: the ``NamespaceGuard`` around it, whose copies of the user's parameters serve (no second
        copy of a model). Yields the notes of the re-run's graph (filled as the re-run starts)."""
        now = _Now(self._edits, ns, used, held, self._moved.tensors())
        try:
            changed = self._changed(now)
            drawn = self._generators.changed(g for g, _ in now.generators)  # a later cell drew from (or re-seeded)
            notes = self._start(now)
            notes[:0] = [n for n in [changed_note(changed), changed_note(drawn, GENERATORS_CHANGED)] if n]
            yield notes
        finally:
            now.give_back()  # then marked as given back: a counter that could not go back moved for good
            kept = [*(t for t, _, _ in now.tensors if self._covered(t)),
                    *(o.obj for o in now.optimizers if id(o.obj) in self._optimizers)]  # fmt: skip
            for obj in kept:
                self._left.record(obj)
            self._generators.left()

    @unseen
    def _changed(self, now: _Now) -> list[str]:
        """The names of the objects a later cell changed since the first run (``cell_changed``): from now on
        re-runs start from them as they are (the re-run gives back their values), not from a copy. An
        optimizer goes with its parameters (one stepped, or given a new learning rate, starts with them)."""
        names: dict[int, str] = {}  # the shortest name of each (images, not images[0] too)
        tensors = [(n, t) for n, t in now.named_edits if self._left.moved(t)]
        steps = [(n, o) for n, o in now.named_steps if self._left.moved(o) or any(map(self._left.moved, params_of(o)))]
        arrays = [(n, a) for n, a, _ in now.arrays if self._left.moved(a)]
        for n, obj in [*tensors, *steps, *arrays]:
            names[id(obj)] = min(names.get(id(obj), n), n, key=len)
        for t in [*(t for _, t in tensors), *(p for _, o in steps for p in params_of(o))]:
            self._follow(t)
        for _, o in steps:
            self._optimizers.pop(id(o), None)
            self._left.forget(o)
        for _, a in arrays:
            self._arrays.pop(id(a), None)
            self._follows[id(a)] = weakref.ref(a)
            self._left.forget(a)
        return sorted(set(names.values()))

    def _follow(self, t: torch.Tensor) -> None:
        """Re-runs start from ``t`` as it is: its first copy is dropped, and it is no longer named past the budget."""
        if self._first(t) is not None:
            del self._copies[id(t)]
        ref = self._uncopied.get(id(t))
        if ref is not None and ref() is t:
            del self._uncopied[id(t)]
        self._left.forget(t)

    @unseen
    def _start(self, now: _Now) -> list[str]:
        """Put the first run's starting point in place; what cannot be (changed shape, device or dtype
        since, a refusing ``load_state_dict``) starts as it is now, and is named like one past the budget."""
        uncopied: set[int] = set()
        with torch.no_grad():
            for t in now.startable:
                first = self._first(t)
                try:
                    if first is not None:  # a fresh copy where .data must take it: the re-run edits it
                        put_back(t, first if t.shape == first.shape and t.dtype == first.dtype else first.clone())
                        continue
                except Exception:
                    pass
                ref = self._uncopied.get(id(t))
                if first is not None or (ref is not None and ref() is t):
                    uncopied.add(id(t))
        for opt in (o.obj for o in now.optimizers):
            ref, state = self._optimizers.get(id(opt), (None, None))
            held: Any = None if ref is None else ref()
            if held is None or held is not opt:
                continue
            if state is None:  # past the budget or not copied: its parameters are named (UNCOPIED_STEPS)
                uncopied.update(id(p) for p in params_of(held))
                continue
            try:  # in the optimizer's own dicts and tensors (cell_state_copies); the saved state stays as it is
                start_from(held, state)
            except Exception:
                uncopied.update(id(p) for p in params_of(held))
        self._generators.start(g for g, _ in now.generators)
        notes = []
        stepped_params = {id(p) for _, opt in now.named_steps for p in params_of(opt)}
        names: dict[int, str] = {}  # the shortest name of each tensor (images, not images[0] too)
        for n, t in now.named_edits:
            if id(t) in uncopied and id(t) not in stepped_params and len(n) < len(names.get(id(t), n + "_")):
                names[id(t)] = n
        followed = [a for _, a, _ in now.arrays if (ref := self._follows.get(id(a))) is not None and ref() is a]
        started = [n for n, a, _ in now.arrays if any(a is f for f in followed) or self._array_started(a)]
        edits = sorted({*names.values(), *(n for n, _, _ in now.arrays if n not in started)})
        if edits:
            notes.append(UNCOPIED_EDITS.format(names=", ".join(edits), them="it" if len(edits) == 1 else "them"))
        steps = sorted({n for n, opt in now.named_steps if any(id(p) in uncopied for p in params_of(opt))})
        if steps:
            notes.append(UNCOPIED_STEPS.format(names=", ".join(steps)))
        unseen_edits = note({n for n, _ in now.moved})
        if unseen_edits:
            notes.append(unseen_edits)
        if now.nexts:
            notes.append(TAKES_NEXT.format(names=", ".join(now.nexts)))
        return notes


class _Now:
    """What the objects a re-run starts from hold before it: put back by :meth:`give_back`."""

    @unseen
    def __init__(self, edits: CellEdits, ns: Mapping[str, Any], used: Collection[str], held: Any,
                 moved: list[tuple[str, torch.Tensor]]) -> None:  # fmt: skip
        self.moved = moved  # edited unseen by the first run: only given back (cell_moved)
        self.named_edits = [(ast.unparse(c), t) for c in edits.in_place
                            if (t := resolve(c, ns, first_tensor=True)) is not None]  # fmt: skip
        self.named_steps = [(ast.unparse(c), o) for c in edits.steps if _steps_state(o := resolve(c, ns))]
        self.nexts = sorted({ast.unparse(c) for c in edits.nexts if _is_iterator(resolve(c, ns))})
        arrays = {id(a): (ast.unparse(c), a) for c in edits.in_place if _is_array(a := resolve(c, ns))}
        self.arrays: list[tuple[str, Any, Any]] = []  # (name, array, its values now)
        for n, a in arrays.values():
            try:
                self.arrays.append((n, a, a.copy()))
            except Exception:  # out of memory: not started (kept[1] would be lost) nor given back
                continue
        reached = {id(t): t for _, t in self.named_edits}
        reached.update((id(p), p) for _, opt in self.named_steps for p in params_of(opt))
        reached.update((id(t), t) for _, t in moved)
        self.tensors: list[tuple[torch.Tensor, torch.Tensor, int | None]] = []  # what give_back puts back
        self.startable: list[torch.Tensor] = []  # the tensors a re-run may start from the first run's values
        for t in reached.values():
            if held is not None and held.holds(t):  # the guard puts its values and version counter back
                self.startable.append(t)
                continue
            try:
                self.tensors.append((t, detached_copy(t), version_of(t)))
            except Exception:  # cannot be copied (a tensor subclass): not started either, nothing to put back
                continue
            self.startable.append(t)
        self.generators = [(g, generator_state(g)) for g in generators_in(ns, used)]
        self.optimizers: list[Held] = []  # each with its state now (one that cannot give it: not started)
        for o in {id(o): o for _, o in self.named_steps}.values():
            try:
                self.optimizers.append(Held(o))
            except Exception:
                continue

    @unseen
    def give_back(self) -> None:
        """Each object as it was before the re-run; one that refuses stays as the re-run left it (and
        the others still go back)."""
        for opt in self.optimizers:  # the user's own dicts and tensors, with their values and counters
            _quietly(opt.give_back)
        with torch.no_grad():
            for t, value, _ in self.tensors:
                _quietly(put_back, t, value)
        set_versions((t, version) for t, _, version in self.tensors)
        for _, a, values in self.arrays:
            _quietly(a.__setitem__, Ellipsis, values)
        for g, state in self.generators:
            _quietly(set_generator_state, g, state)


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # never raised into the user's re-run (gradsight's promise: hooks never raise)
        return


def edited(edits: CellEdits, ns: Mapping[str, Any]) -> list[torch.Tensor]:
    """The tensors of ``ns`` the cell's code edits in place (each once)."""
    found = (resolve(c, ns, first_tensor=True) for c in edits.in_place)
    return list({id(t): t for t in found if t is not None}.values())


def edited_arrays(edits: CellEdits, ns: Mapping[str, Any]) -> list[Any]:
    """The NumPy arrays of ``ns`` the cell's code edits in place (each once)."""
    found = (resolve(c, ns) for c in edits.in_place)
    return list({id(a): a for a in found if _is_array(a)}.values())


def _is_array(value: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray) and bool(value.flags.writeable)


def stepped(edits: CellEdits, ns: Mapping[str, Any]) -> list[Any]:
    """The optimizers and LR schedulers of ``ns`` the cell's code steps (each once)."""
    found = (resolve(c, ns) for c in edits.steps)
    return list({id(o): o for o in found if _steps_state(o)}.values())


def _steps_state(value: Any) -> bool:
    return value is not None and has_state(value)


def _is_iterator(value: Any) -> bool:
    return (
        value is not None and not isinstance(value, torch.Tensor) and callable(getattr(type(value), "__next__", None))
    )


def _cost(t: torch.Tensor) -> int:
    return 0 if t.is_meta else t.numel() * t.element_size()
