"""No training inside a run: a runnable run's forward may not run backward or clear gradients.

A function given to ``gs.debugger(fn)`` may be a whole training step (``opt.zero_grad();
loss.backward(); opt.step()``). :func:`no_backward` stops it at its backward, with what to do
instead, and gives back the ``.grad`` fields its ``zero_grad()`` cleared before. The patched
attributes are process-wide and runs may overlap on two threads, so :class:`_Patches` installs them
for the first run and restores them after the last, and they act only in a thread inside a run.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .guard import detached_copy, put_back, unseen

BACKWARD_IN_FORWARD = (
    "the code called backward() itself: a runnable debugger runs the forward, then the backward itself "
    "(with torch.autograd.grad, touching no .grad and stepping no optimizer). Give it the loss — "
    "gs.debugger(lambda: compute_loss(batch)) or gs.debugger(model, inputs=batch, loss=...) — or, to watch "
    "a whole training step of yours, use gs.debugger(model) (live mode) or a %%gradsight cell. Nothing was "
    "changed: the backward was stopped before it ran."
)


@contextmanager
def no_backward() -> Iterator[None]:
    """A forward that calls backward (and then an optimizer step) would train the user's model:
    stop it at the backward, with what to do instead (``torch.autograd.grad`` stays allowed: a
    gradient penalty takes one inside the forward). A training step clears the gradients first
    (``opt.zero_grad()``, ``model.zero_grad()``): the ``.grad`` fields it clears are given back
    when the block ends — the user's accumulated gradients are no run's to drop.

    The patched attributes are process-wide, and runs may overlap on two threads (two ``marimo run``
    sessions): :class:`_Patches` installs them for the first run and restores them after the last,
    and they act only in a thread inside a run (``_RUN.cleared``); other threads train on."""
    cleared: dict[int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = {}
    outer = getattr(_RUN, "cleared", None)
    _RUN.cleared = cleared
    _PATCHES.acquire()
    try:
        yield
    finally:
        _PATCHES.release()
        _RUN.cleared = outer
        _give_back(cleared.values())


_RUN = threading.local()  # .cleared: the .grad fields zero_grad cleared in this thread's run, or None


def _refuse(*args: Any, **kwargs: Any) -> None:
    if getattr(_RUN, "cleared", None) is None:  # not in a run in this thread: the user trains
        return _PATCHES.originals[(torch.autograd, "backward")](*args, **kwargs)  # type: ignore[no-any-return]
    raise RuntimeError(BACKWARD_IN_FORWARD)


def _keeping(original: Any, params: Any) -> Any:
    """``original`` (a class's own ``zero_grad``), keeping in this thread's run what it clears."""

    @functools.wraps(original)
    def zero_grad(self: Any, *args: Any, **kwargs: Any) -> Any:
        cleared = getattr(_RUN, "cleared", None)
        if cleared is not None:
            for p in unseen(params)(self):
                if id(p) not in cleared:  # zero_grad(set_to_none=False) zeroes in place: keep the values
                    g = p.grad
                    cleared[id(p)] = (p, g, None if g is None else detached_copy(g))
        return original(self, *args, **kwargs)

    return zero_grad


class _Patches:
    """``torch.autograd.backward`` and the ``zero_grad`` of ``nn.Module``, ``Optimizer`` and every
    optimizer class that defines its own (apex's FusedAdam zeroes in place without ``super()``),
    patched while any thread is in a run (counted under a lock), each put back only if it is still
    gradsight's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self.originals: dict[tuple[Any, str], Any] = {}
        self._wrappers: dict[tuple[Any, str], Any] = {}

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self.originals = {(torch.autograd, "backward"): torch.autograd.backward}
            self._wrappers = {(torch.autograd, "backward"): _refuse}
            owners = [(torch.nn.Module, _module_parameters)] + [(c, _optimized) for c in _optimizer_classes()]
            for owner, params in owners:
                original = owner.__dict__["zero_grad"]
                self.originals[(owner, "zero_grad")] = original
                self._wrappers[(owner, "zero_grad")] = _keeping(original, params)
            for (owner, attribute), wrapper in self._wrappers.items():
                setattr(owner, attribute, wrapper)

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            for (owner, attribute), wrapper in self._wrappers.items():
                if getattr(owner, attribute) is wrapper:  # not replaced by someone since
                    setattr(owner, attribute, self.originals[(owner, attribute)])


def _optimizer_classes() -> list[type]:
    """``torch.optim.Optimizer`` and its subclasses that define ``zero_grad`` themselves."""
    found: list[type] = []
    stack: list[type] = [torch.optim.Optimizer]
    seen: set[type] = set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if "zero_grad" in cls.__dict__:
            found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def _optimized(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _module_parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return list(module.parameters())


_PATCHES = _Patches()


@unseen
def _give_back(cleared: Any) -> None:
    with torch.no_grad():
        for p, grad, values in cleared:
            if grad is not None and values is not None and not torch.equal(grad, values):
                put_back(grad, values)
            p.grad = grad
