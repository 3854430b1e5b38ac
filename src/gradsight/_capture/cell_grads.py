"""The ``.grad`` a ``%%gradsight`` cell's backward found before it added to it (:class:`FirstGrads`),
so that its what-if re-runs start from it as the first run did, and never write into the user's own
``.grad`` tensors (:class:`RerunGrads`).

A re-run that started from what the first run left added its gradient to the first run's: its
leaves' ``.grad`` summaries showed the sum, and a note said ``.grad`` accumulated "on top of a
gradient it held" — the first run's own. And a backward adds to ``.grad`` in place (a sparse one
too), so a re-run that ran into the user's tensors changed their values.

The leaves are those the cell's backward calls reach (the spy hands over the variables of the
``AccumulateGrad`` nodes of each call, however the cell reached them: a helper function, a list, an
object's attribute), read just before the call: a ``.grad`` that is None then costs nothing to
remember, and one that holds values is copied then (sparse ones too), only while the copies fit the
debugger's memory budget (``kept_bytes``: the run counts them). A cell that starts with
``zero_grad()`` copies nothing. Past the budget, that leaf's re-runs start its ``.grad`` from None and
the re-run's graph says so: its summary is the re-run's own gradient, not a sum passed off as one.
Non-leaf tensors the cell reaches that retain their gradient (``h.retain_grad()`` in an earlier cell)
are remembered before the cell runs.

A re-run puts each remembered ``.grad`` in place as a fresh copy (:meth:`FirstGrads.restored`); a leaf
of the user's its backward reaches that the first run's did not (a what-if made it require grad)
starts from None; either way the user's ``.grad`` objects, untouched, go back afterwards.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch


class Grads(Protocol):
    """What a cell's run tells of its backward calls (``cell.run_cell``, ``spy.BackwardSpy``):
    :class:`FirstGrads` for the first run, :class:`RerunGrads` for a re-run."""

    kept_bytes: int  # the copies it keeps: they count in the run's memory budget

    def reached(self, leaves: Iterable[torch.Tensor]) -> None:
        """Just before a backward call: the leaves it reaches, before it adds to their ``.grad``."""


@dataclass
class _First:
    leaf: weakref.ref[torch.Tensor]
    copy: torch.Tensor | None  # .grad's values before the cell's backward added to it; None: see held
    held: bool = False  # .grad held a gradient then (copy None: past the budget, not copied)


def _cost(t: torch.Tensor) -> int:
    if t.is_meta:
        return 0
    if t.layout == torch.sparse_coo:
        return _cost(t._values()) + _cost(t._indices())
    if t.layout != torch.strided:
        return t.numel() * t.element_size()  # an estimate (CSR and co: fewer values stored)
    return t.untyped_storage().nbytes()


def _clone(t: torch.Tensor) -> torch.Tensor:
    with torch._C.DisableTorchFunction():  # out of sight of a taint trace's mode
        return t.detach().clone()


class FirstGrads:
    """What each ``.grad`` held before the cell's first run added to it: :meth:`reached` before each
    of its backward calls; :meth:`restored` puts it in place for a re-run."""

    def __init__(self, budget: int, reach: Iterable[object] = ()) -> None:
        self._first: list[_First] = []
        self._known: dict[int, _First] = {}  # id(tensor) ->
        self._room = budget
        self.kept_bytes = 0
        for value in reach:  # non-leaves that retain their gradient: no AccumulateGrad node reaches them
            if isinstance(value, torch.Tensor) and not value.is_leaf and value.retains_grad:
                self._remember(value)

    def reached(self, leaves: Iterable[torch.Tensor]) -> None:
        """Before a backward call of the cell's first run: what ``.grad`` of ``leaves`` holds, for
        those no earlier call reached."""
        for t in leaves:
            self._remember(t)

    def _remember(self, t: torch.Tensor) -> None:
        known = self._known.get(id(t))
        if known is not None and known.leaf() is t:
            return
        with torch.no_grad():
            grad = t.grad
            copy = None
            if grad is not None:
                cost = _cost(grad)
                if cost <= self._room:
                    copy = _clone(grad)
                    self._room -= cost
                    self.kept_bytes += cost
            first = _First(weakref.ref(t), copy, grad is not None)
        self._first.append(first)
        self._known[id(t)] = first

    def settle(self) -> None:
        """After the first run: forget the leaves that are gone."""
        self._first = [f for f in self._first if f.leaf() is not None]
        self._known = {id(t): f for f in self._first if (t := f.leaf()) is not None}

    @contextmanager
    def restored(self, reach: Iterable[object] = ()) -> Iterator[RerunGrads]:
        """Each remembered ``.grad`` as it was before the first run added to it (a fresh copy: the
        re-run's backward adds to it in place; None past the budget), and the user's own ``.grad``
        objects back afterwards. ``reach``: the objects the cell reaches (their tensors, and modules'
        parameters, are the user's: one whose ``.grad`` is None gets None back after the re-run)."""
        rerun = RerunGrads(reach)
        try:
            with torch.no_grad():
                for first in self._first:
                    t = first.leaf()
                    if t is not None:
                        rerun.put(t, None if first.copy is None else _clone(first.copy), first.held)
            yield rerun
        finally:
            rerun.give_back()


class RerunGrads:
    """The ``.grad`` a re-run replaced, to give back. :meth:`reached`, before each of the re-run's
    backward calls: a leaf it did not replace yet (the first run's backward did not reach it) gets
    None, so that no backward of a re-run adds into a tensor of the user's."""

    def __init__(self, reach: Iterable[object] = ()) -> None:
        self._put: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._ids: set[int] = set()
        self.emptied: list[torch.Tensor] = []  # held a gradient the re-run starts without
        self._reach = reach
        self._users: set[int] | None = None  # ids of the user's tensors in reach (when first needed)
        self.kept_bytes = 0  # the copies it puts in place are counted once, in the first run's budget (FirstGrads)

    def put(self, t: torch.Tensor, grad: torch.Tensor | None, held: bool) -> None:
        if id(t) in self._ids:
            return
        now = t.grad
        try:
            t.grad = grad
        except (RuntimeError, TypeError):  # changed dtype, shape or device since: no copy fits
            try:
                t.grad = None
            except (RuntimeError, TypeError):
                return
            grad = None
        self._put.append((t, now))
        self._ids.add(id(t))
        if held and grad is None:
            self.emptied.append(t)

    def reached(self, leaves: Iterable[torch.Tensor]) -> None:
        with torch.no_grad():
            for t in leaves:
                if id(t) in self._ids:
                    continue
                if t.grad is None and id(t) not in self._user_tensors():
                    continue  # a tensor the re-run made: its .grad is the re-run's own (the inspector shows it)
                self.put(t, None, t.grad is not None)

    def _user_tensors(self) -> set[int]:
        if self._users is None:
            self._users = set()
            for value in self._reach:
                if isinstance(value, torch.nn.Module):
                    self._users.update(id(p) for p in value.parameters())
                elif isinstance(value, torch.Tensor):
                    self._users.add(id(value))
        return self._users

    def give_back(self) -> None:
        for t, grad in reversed(self._put):
            t.grad = grad
        self._put.clear()
        self._ids.clear()

    def note(self, names: Mapping[torch.Tensor, str]) -> str | None:
        """What the re-run's graph says about the leaves it started from None though they held a
        gradient (past the memory budget, or first reached by this re-run)."""
        if not self.emptied:
            return None
        shown = sorted({names.get(t) or f"a tensor of shape {tuple(t.shape)}" for t in self.emptied})
        return (
            f".grad of {', '.join(shown)} held a gradient before the cell's backward that gradsight did not copy "
            "(past the memory budget, or the first run's backward did not reach it): this re-run starts it from "
            "None, so its summary is this re-run's own gradient, not added to that one as the first run's was. "
            "Your .grad is as it was."
        )
