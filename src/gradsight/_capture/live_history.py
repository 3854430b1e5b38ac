"""The ``.grad`` history of a live session's named leaves (:class:`GradHistories`): each name's
steps belong to one tensor. A parameter replaced under its name between steps (``model.head =
nn.Linear(8, 3)`` when fine-tuning for a new task) starts a history of its own: the old parameter's
norms, listed before the new one's as one tensor's accumulation, misled."""

from __future__ import annotations

import weakref

import torch

from ..inspection import GradStep

HISTORY = 50  # steps of .grad history kept per leaf


def new_tensor_note(name: str, since: int) -> str:
    return (
        f"{name} is a new tensor since step {since} (the module or parameter under that name was "
        "replaced): its .grad history starts there; the earlier steps were another tensor's."
    )


class GradHistories(dict[str, list[GradStep]]):
    """Name → the last :data:`HISTORY` steps of that leaf's ``.grad``. Which tensor each history is of
    is kept weakly (a replaced parameter is the user's to free) with its id: a dead reference or
    another tensor under the name restarts the history (:meth:`add`)."""

    def __init__(self) -> None:
        super().__init__()
        self._tensors: dict[str, tuple[int, weakref.ref[torch.Tensor]]] = {}
        self.restarted: dict[str, int] = {}  # name → the step its current tensor's history starts at

    def add(self, name: str, leaf: torch.Tensor, entry: GradStep) -> None:
        """``entry`` for the leaf ``leaf`` now named ``name``: a history of its own if ``name``
        held another tensor before."""
        known = self._tensors.get(name)
        if known is None or known[0] != id(leaf) or known[1]() is not leaf:
            self._tensors[name] = (id(leaf), weakref.ref(leaf))
            if name in self:
                self[name] = []
                self.restarted[name] = entry.step
        steps = self.setdefault(name, [])
        steps.append(entry)
        del steps[:-HISTORY]

    def notes(self, names: set[str]) -> list[str]:
        """A note for each of ``names`` whose history restarted, while its start is in view (fewer
        than :data:`HISTORY` steps since)."""
        return [new_tensor_note(name, since) for name, since in self.restarted.items()
                if name in names and len(self.get(name, ())) < HISTORY]  # fmt: skip
