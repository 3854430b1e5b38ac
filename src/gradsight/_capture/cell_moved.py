"""The safety net under ``cell_edits``: tensors a ``%%gradsight`` cell edits in place in a way its code
does not show (:class:`Moved`).

``cell_edits`` reads the edits a re-run would make again from the cell's syntax tree, and misses those
made through another name: a loop variable (``for t in data: t.mul_(2)``), a view (``x.view(-1).mul_(2)``),
a name the cell rebinds to the same object (``images = images.to('cpu'); images /= 255``), a function's
``inplace=True``, an alias of ``torch.nn.init``, an optimizer the cell makes, a manual SGD step in a loop.
Before the first run gradsight reads the version counters (no copies) of every tensor the cell's names
reach — a tensor, a module's parameters, an optimizer's, and those one level inside a container or an
object (as ``namespace_guard.reachable``); after it, a tensor whose counter moved and that ``FirstState``
did not copy was edited in place without gradsight knowing. Its first values are gone: a re-run starts
from those the first run left (its graph says so), and gives back what the tensor held before it.

A tensor whose ``grad_fn`` the first run changed (``h.mul_(2)`` on a tensor out of an earlier cell's graph,
``x += w`` with ``w`` requiring grad) cannot be given back: the in-place op is in its history, and a
re-run would add another. Such a cell is not re-run (:meth:`Moved.rebased`).
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch

from .guard import version_of
from .namespace_guard import has_state, names_reached, one_level_in

UNSEEN_EDITS = (
    "The cell edits {names} in place, in a way gradsight does not read from its code (through another name: a loop "
    "variable, a view, an alias, a helper, an optimizer the cell makes), so it kept no copy of {them} before the "
    "first run: this re-run started from the values the first run left and edited them once more, so it "
    "differentiates other values than the run shown. Your tensors are as they were before this re-run."
)
REBASED = (
    "The cell edits {names} in place, and autograd recorded the edit in {its} history (a grad_fn: {it} came out of "
    "a graph, or the edit took a tensor that requires grad): each re-run would add its in-place op to your "
    "tensor's history once more, and your later backward through {it} would count it again. So this cell cannot be "
    "re-run. Make the tensor in the cell, or edit a copy ({example} = {example}.clone() first), and run the "
    "cell again."
)
_SHOWN = 8  # names listed in the note; the rest counted
_SKIPPED = (str, bytes, int, float, bool, type(None), type, types.ModuleType, types.FunctionType,
            types.BuiltinFunctionType, types.MethodType)  # fmt: skip


class Moved:
    """The version counters of the tensors a cell reaches, read before its first run; :meth:`settle`
    after it keeps those that moved and were not copied."""

    def __init__(self, ns: Mapping[str, Any], used: Collection[str]) -> None:
        # each tensor, its name, version counter and grad_fn (held until settle: a node takes no weak reference)
        self._before: list[tuple[weakref.ref[torch.Tensor], str, int, Any]] = []
        self._moved: list[tuple[weakref.ref[torch.Tensor], str]] = []
        self._rebased: list[tuple[weakref.ref[torch.Tensor], str]] = []
        try:
            for name, t in named_tensors(ns, used):
                version = version_of(t)
                if version is not None and not t.is_meta:
                    self._before.append((weakref.ref(t), name, version, _history(t)))
        except Exception:  # a namespace that cannot be looked into: no safety net, the first run goes on
            self._before = []

    def settle(self, covered: Callable[[torch.Tensor], bool]) -> None:
        """After the first run: the tensors whose counter moved, but for those ``covered`` (copied, or
        named past the budget, by ``FirstState``)."""
        before, self._before = self._before, []
        for ref, name, version, grad_fn in before:
            t = ref()
            try:
                if t is None or version_of(t) == version:
                    continue
                if _history(t) is not grad_fn:  # an edit autograd recorded: its history grows each re-run
                    self._rebased.append((ref, name))
                if not covered(t):
                    self._moved.append((ref, name))
            except Exception:  # a tensor that cannot be read now: not named
                continue

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """The tensors the first run edited unseen, still alive, each with its name."""
        return [(name, t) for ref, name in self._moved if (t := ref()) is not None]

    def rebased(self) -> str | None:
        """Why the cell cannot be re-run: the tensors of the user's whose history its in-place edits grow
        (None if none)."""
        names = sorted({name for ref, name in self._rebased if ref() is not None})
        if not names:
            return None
        one = len(names) == 1
        listed = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
        example = names[0] if names[0].isidentifier() else "x"
        return REBASED.format(names=listed, its="its" if one else "their", it="it" if one else "they", example=example)


def _history(t: torch.Tensor) -> Any:
    """The node an in-place edit autograd records replaces: a view's base's (a view's own ``grad_fn`` is
    made anew after any edit of its base, recorded or not: ``opt.step()`` under ``no_grad``)."""
    base = t._base if t._is_view() else None
    return (base if base is not None else t).grad_fn


def note(names: Collection[str]) -> str | None:
    """The re-run's note naming the tensors edited unseen (None if none)."""
    if not names:
        return None
    shown = sorted(names)[:_SHOWN]
    rest = len(names) - len(shown)
    listed = ", ".join(shown) + (f" and {rest} more" if rest else "")
    return UNSEEN_EDITS.format(names=listed, them="it" if len(names) == 1 else "them")


def named_tensors(ns: Mapping[str, Any], used: Collection[str]) -> list[tuple[str, torch.Tensor]]:
    """The tensors a cell using ``used`` reaches, each once, by its shortest name: a tensor it names, a
    module's parameters (``model.fc.weight``; not its buffers: a forward updates BatchNorm's running
    statistics itself), an optimizer's, and those one level inside the other values (``data[0]``,
    ``trainer.model.weight``), the globals of the helper functions it names included."""
    wanted = names_reached(ns, used)
    found: dict[int, tuple[str, torch.Tensor]] = {}

    def add(name: str, value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            pairs = [(name, value)]
        elif isinstance(value, torch.nn.Module):
            pairs = [(f"{name}.{p}", t) for p, t in value.named_parameters()]
        elif isinstance(value, torch.optim.Optimizer):
            pairs = [(f"{name}.param_groups[{g}]['params'][{i}]", p) for g, group in enumerate(value.param_groups)
                     for i, p in enumerate(group.get("params", ())) if isinstance(p, torch.Tensor)]  # fmt: skip
        else:
            return has_state(value)  # a scheduler, a GradScaler: nothing of theirs to look into
        for n, t in pairs:
            if id(t) not in found or len(n) < len(found[id(t)][0]):
                found[id(t)] = (n, t)
        return True

    for name in wanted:
        value = ns[name]
        if isinstance(value, _SKIPPED):
            continue
        try:
            if not add(name, value):
                for inner, v in one_level_in(name, value):
                    add(inner, v)
        except Exception:  # an object that cannot be looked into: none of its tensors
            continue
    return list(found.values())
