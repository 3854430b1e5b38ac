"""The ``.grad`` each leaf a ``%%gradsight`` cell reads held before the cell first ran
(:class:`FirstGrads`), so that its what-if re-runs start from it as the first run did. A re-run that
started from what the first run left added its gradient to the first run's: its leaves' ``.grad``
summaries showed the sum, and a note said ``.grad`` accumulated "on top of a gradient it held" —
the first run's own. The re-run's guard (``NamespaceGuard``) puts the user's ``.grad`` back after.

A ``.grad`` that was None costs nothing to remember; one that held values is copied, within the
debugger's memory budget (past it, that leaf's re-runs start from what ``.grad`` holds then).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch


class FirstGrads:
    """``.grad`` of ``leaves`` now (before the cell runs); :meth:`restored` puts it in place for a re-run."""

    def __init__(self, leaves: Iterable[torch.Tensor], budget: int) -> None:
        self._first: list[tuple[weakref.ref[torch.Tensor], torch.Tensor | None]] = []
        seen: set[int] = set()
        room = budget
        with torch.no_grad():
            for t in leaves:
                if id(t) in seen or not isinstance(t, torch.Tensor) or t.is_meta:
                    continue
                seen.add(id(t))
                grad = t.grad
                cost = 0 if grad is None else grad.numel() * grad.element_size()
                if grad is not None and (cost > room or grad.layout != torch.strided):
                    continue  # past the budget (or sparse): re-runs start from what it holds then
                room -= cost
                self._first.append((weakref.ref(t), None if grad is None else grad.detach().clone()))

    @contextmanager
    def restored(self) -> Iterator[None]:
        """Each remembered leaf's ``.grad`` as it was before the first run (a fresh copy: the re-run's
        backward adds to it in place), and the leaves' own ``.grad`` objects back afterwards."""
        put: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        try:
            with torch.no_grad():
                for ref, first in self._first:
                    t = ref()
                    if t is None or _same(t.grad, first):
                        continue
                    now = t.grad
                    try:
                        t.grad = None if first is None else first.clone()
                    except (RuntimeError, TypeError):  # changed dtype, shape or device since: leave it
                        continue
                    put.append((t, now))
            yield
        finally:
            for t, grad in reversed(put):
                t.grad = grad


def _same(grad: torch.Tensor | None, first: torch.Tensor | None) -> bool:
    return grad is None and first is None
