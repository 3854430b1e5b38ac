"""The ``.grad`` each leaf a ``%%gradsight`` cell reads held before the cell first ran
(:class:`FirstGrads`), so that its what-if re-runs start from it as the first run did. A re-run that
started from what the first run left added its gradient to the first run's: its leaves' ``.grad``
summaries showed the sum, and a note said ``.grad`` accumulated "on top of a gradient it held" —
the first run's own. The re-run's guard (``NamespaceGuard``) puts the user's ``.grad`` back after.

A ``.grad`` that was None costs nothing to remember. One that held values is copied before the
cell runs (within the debugger's memory budget; past it, that leaf's re-runs start from what
``.grad`` holds then), and the copy is kept only where the cell's backward added to that very
tensor (no ``zero_grad()`` first): where the cell left it alone, or replaced it, a re-run needs
nothing back.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass
class _First:
    leaf: weakref.ref[torch.Tensor]
    copy: torch.Tensor | None  # .grad's values before the cell ran; None: .grad was None
    grad: weakref.ref[torch.Tensor] | None = None  # the .grad tensor itself then, and its version
    version: int = 0


class FirstGrads:
    """``.grad`` of ``leaves`` now (before the cell runs); :meth:`settle` after its first run;
    :meth:`restored` puts it in place for a re-run."""

    def __init__(self, leaves: Iterable[torch.Tensor], budget: int) -> None:
        self._first: list[_First] = []
        seen: set[int] = set()
        room = budget
        with torch.no_grad():
            for t in leaves:
                if id(t) in seen or not isinstance(t, torch.Tensor) or t.is_meta:
                    continue
                seen.add(id(t))
                grad = t.grad
                if grad is None:
                    self._first.append(_First(weakref.ref(t), None))
                    continue
                cost = grad.numel() * grad.element_size()
                if cost > room or grad.layout != torch.strided:
                    continue  # past the budget (or sparse): re-runs start from what it holds then
                room -= cost
                self._first.append(_First(weakref.ref(t), grad.detach().clone(), weakref.ref(grad), grad._version))

    def settle(self) -> None:
        """After the first run: keep a copy only where the cell's backward added to the ``.grad`` tensor
        the leaf held (the same tensor, changed in place)."""
        kept = []
        for first in self._first:
            t = first.leaf()
            if t is None:
                continue
            if first.copy is not None:
                before = first.grad() if first.grad is not None else None
                if before is None or t.grad is not before or before._version == first.version:
                    continue  # replaced by the cell, or left alone: nothing to put back
            kept.append(first)
        self._first = kept

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Each remembered leaf's ``.grad`` as it was before the first run (a fresh copy: the re-run's
        backward adds to it in place), and the leaves' own ``.grad`` objects back afterwards."""
        put: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        try:
            with torch.no_grad():
                for first in self._first:
                    t = first.leaf()
                    if t is None or (t.grad is None and first.copy is None):
                        continue
                    now = t.grad
                    try:
                        t.grad = None if first.copy is None else first.copy.clone()
                    except (RuntimeError, TypeError):  # changed dtype, shape or device since: leave it
                        continue
                    put.append((t, now))
            yield
        finally:
            for t, grad in reversed(put):
                t.grad = grad
