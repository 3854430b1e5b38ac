"""The optimizers a live session saw step, and the parameters none of them updates.

Live mode does not know the user's optimizer, but every ``Optimizer.step()`` calls PyTorch's global
step post-hooks: a session notes each optimizer that steps (a weak reference, no work per step
beyond that), and a step's graph says which of its parameters got a gradient while no optimizer
that stepped holds them and nothing wrote them since the last captured step — a head left out of
``torch.optim.SGD(model.encoder.parameters())`` never trains, and its ``.grad`` grows step after
step. Nothing is said before an optimizer stepped (the first step's graph is shown before its
``optimizer.step()``), nor of parameters that change all the same (updated by hand, or by a
``torch.compile``'d optimizer step, which runs no Python hook gradsight can see).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from .facts import Versions
from .modules import compiling

_SHOWN = 6  # parameters named in the note


class Optimizers:
    """Follows every optimizer's ``step()`` until :meth:`close`."""

    def __init__(self) -> None:
        self._seen: weakref.WeakSet[torch.optim.Optimizer] = weakref.WeakSet()
        self._versions: dict[int, int] = {}  # the parameters' versions at the last step's forward
        self._handle: Any = register_optimizer_step_post_hook(self._stepped)

    def _stepped(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if compiling():  # traced by dynamo (a torch.compile'd optimizer step): stay out of its graph
            return
        try:  # never break the user's optimizer step
            self._seen.add(optimizer)
        except Exception:
            return

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.remove()

    def unheld(self, trained: Sequence[tuple[torch.Tensor, str]], versions: Versions) -> list[str]:
        """The names of the ``trained`` parameters (those that got a gradient in a step, with their
        names) that no optimizer that stepped holds, and that kept their version since the step before
        (``versions``: at this step's forward); none when no optimizer stepped."""
        before, self._versions = self._versions, dict(versions)
        try:
            optimizers = list(self._seen)
            held = {id(p) for opt in optimizers for group in opt.param_groups for p in group["params"]}
        except Exception:  # an optimizer of the user's own kind, with param_groups of another shape
            return []
        if not optimizers:
            return []
        now = self._versions
        return [name for p, name in trained if id(p) not in held and isinstance(p, torch.nn.Parameter)
                and id(p) in before and before[id(p)] == now.get(id(p))]  # fmt: skip

    def note(self, step: int, left: Sequence[str]) -> str | None:
        """What the graph of ``step`` says of the parameters in ``left`` (:meth:`unheld`)."""
        if not left:
            return None
        listed = ", ".join(left[:_SHOWN]) + (f" and {len(left) - _SHOWN} more" if len(left) > _SHOWN else "")
        kinds = ", ".join(sorted({type(opt).__name__ for opt in list(self._seen)}))
        one = len(left) == 1
        return (
            f"{listed} got a gradient in step {step}, but {'it is' if one else 'they are'} in no optimizer that "
            f"stepped since the debugger attached ({kinds}): {'it never updates' if one else 'they never update'}, "
            f"and {'its' if one else 'their'} .grad keeps adding up unless the loop zeroes it. Pass "
            f"{'it' if one else 'them'} to the optimizer (e.g. torch.optim.SGD(model.parameters(), ...)), or "
            "freeze with requires_grad_(False) what should not train."
        )
