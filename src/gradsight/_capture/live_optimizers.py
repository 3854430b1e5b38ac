"""The optimizers a live session saw step, and the parameters none of them updates.

Live mode does not know the user's optimizer, but every ``Optimizer.step()`` calls PyTorch's global
step post-hooks: a session counts each optimizer's steps (a weak reference) and notes each of its
parameters' ``.grad`` after the step (a weak reference and its version: a backward that finds that
``.grad`` unchanged adds to a gradient the optimizer used, :meth:`Optimizers.kept`). A step's graph
names the parameters that no optimizer that stepped holds and that kept their values — a
fingerprint of a few sampled elements and the sum, besides ``_version`` — through at least two
steps of the optimizers that train the rest of the model, getting a gradient at each captured step
meanwhile: a head left out of ``torch.optim.SGD(model.encoder.parameters())`` never trains. Said of
nothing else, since a false claim is worse than silence: not before an optimizer of the model
stepped twice (gradient accumulation steps its optimizer every k batches, while another model's
optimizer may step every batch), nor of parameters whose values change all the same — updated
through ``.data`` (fp32 master weights copied back), by hand, or by a ``torch.compile``'d
optimizer step, which runs no Python hook gradsight can see. An optimizer that holds them but has
not stepped since the debugger attached (it steps every k batches, a GradScaler skipped its steps)
calls no hook either: the note says what is known — no optimizer stepped them — and names both
causes, rather than claiming they are in none.

``.grad`` accumulating across optimizer steps (a forgotten ``zero_grad()``) is decided at the
optimizer step, not when a backward adds to a used gradient: a GAN's generator loss runs through D
and adds to the ``.grad`` D's optimizer left, but ``od.zero_grad()`` clears it before ``od.step()``.
A captured step whose backward began on a used ``.grad`` (:meth:`Optimizers.kept`) says which
(:meth:`Optimizers.expect`); the next step of an optimizer holding one of them that finds that same
``.grad`` unwritten since the step's last pass used the sum (:meth:`Optimizers.accumulated`, said by
the next step shown). A ``.grad`` written in between (``zero_grad(set_to_none=False)``, but also
``clip_grad_norm_`` or a ``GradScaler``'s unscale) is not told apart: nothing is said.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from .modules import compiling

_SHOWN = 6  # parameters named in the note
_STEPS = 2  # optimizer steps a parameter must keep its values through to be named
_SAMPLED = 16  # elements of a parameter in its fingerprint (with the sum of all)


def fingerprint(p: torch.Tensor) -> torch.Tensor | None:
    """A few of ``p``'s elements, evenly spaced, and the sum of all, copied (None: it has none, or
    they cannot be read: a sparse or meta tensor). An update through ``.data`` moves them, and no
    ``_version``."""
    try:
        with torch.no_grad():
            flat = p.detach().reshape(-1)
            if flat.numel() == 0:
                return None
            sample = flat[:: max(1, flat.numel() // _SAMPLED)][:_SAMPLED]
            return torch.cat([sample, flat.sum().reshape(1).to(sample.dtype)]).cpu().clone()
    except Exception:
        return None


@dataclass
class _Kept:
    """A parameter seen unchanged since a captured step: itself, its fingerprint and version then,
    and how many times each optimizer seen had stepped by then."""

    ref: weakref.ref[torch.Tensor]
    print: torch.Tensor
    version: int
    steps: dict[int, int]


@dataclass
class _Added:
    """A captured step's backward added to the ``.grad`` an optimizer step had used: the parameter,
    that ``.grad`` and its version after the step's last pass, the step, the name, and the norm
    ``.grad`` held when its backward began (a 0-d tensor: read when the note is made)."""

    param: weakref.ref[torch.Tensor]
    grad: weakref.ref[torch.Tensor]
    version: int
    step: int
    name: str
    norm: Any


class Optimizers:
    """Follows every optimizer's ``step()`` until :meth:`close`."""

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[torch.optim.Optimizer, int] = weakref.WeakKeyDictionary()
        self._kept: dict[int, _Kept] = {}  # id -> an unheld parameter unchanged since the step it names
        # id(parameter) -> its .grad (a weak reference) and that .grad's version after the last step of
        # an optimizer holding it: a backward that finds the same .grad unchanged adds to a used gradient
        self._grads: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}
        self._added: dict[int, _Added] = {}  # id(parameter) -> what its optimizer's next step decides
        self._used: list[_Added] = []  # (under the GIL) those an optimizer step used summed, not said yet
        self._handle: Any = register_optimizer_step_post_hook(self._stepped)
        self._pre: Any = register_optimizer_step_pre_hook(self._stepping)

    def expect(self, step: int, added: Sequence[tuple[torch.Tensor, str, Any]]) -> None:
        """Step ``step``'s pass ended; its backward began on the ``.grad`` of ``added`` (parameter, name,
        the norm it held then) that an optimizer step used (:meth:`kept`) and added to it: their
        optimizer's next step decides whether that sum is used (:meth:`_stepping`). Never raises."""
        try:
            for p, name, norm in added:
                g = p.grad
                if g is not None:
                    self._added[id(p)] = _Added(weakref.ref(p), weakref.ref(g), g._version, step, name, norm)
        except Exception:
            return

    def _stepping(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Before an optimizer step: the parameters whose ``.grad`` holds a sum across steps
        (:meth:`expect`), unwritten since, are what it uses."""
        if not self._added or compiling():
            return
        try:  # never break the user's optimizer step
            for group in optimizer.param_groups:
                for p in group["params"]:
                    added = self._added.pop(id(p), None)
                    g = p.grad
                    if added is not None and added.param() is p and added.grad() is g \
                            and g is not None and g._version == added.version:  # fmt: skip
                        self._used.append(added)
        except Exception:
            return

    def accumulated(self) -> tuple[int, list[tuple[str, Any]]] | None:
        """The last step an optimizer step used summed with an earlier step's ``.grad`` (its number,
        and each parameter's name and the norm ``.grad`` held when its backward began), once; None:
        none since the last call."""
        used, self._used = self._used, []
        if not used:
            return None
        step = max(a.step for a in used)
        return step, [(a.name, a.norm) for a in used if a.step == step]

    def _stepped(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if compiling():  # traced by dynamo (a torch.compile'd optimizer step): stay out of its graph
            return
        try:  # never break the user's optimizer step
            self._seen[optimizer] = self._seen.get(optimizer, 0) + 1
            grads = self._grads
            for group in optimizer.param_groups:  # (~0.3 µs a parameter: the step's own loop costs more)
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        grads.pop(id(p), None)
                    else:
                        grads[id(p)] = (weakref.ref(g), g._version)
        except Exception:
            return

    def kept(self, p: torch.Tensor, grad: torch.Tensor) -> bool:
        """Is ``grad`` (``p.grad``) what it was after the last step of an optimizer holding ``p``: the
        same tensor, not written since (no ``zero_grad()``, no backward)? Never raises (read in the
        user's backward)."""
        try:
            then = self._grads.get(id(p))
            return then is not None and then[0]() is grad and then[1] == grad._version
        except Exception:
            return False

    def close(self) -> None:
        handles, self._handle, self._pre = (self._handle, self._pre), None, None
        for handle in handles:
            if handle is not None:
                handle.remove()
        self._kept, self._grads, self._added, self._used = {}, {}, {}, []

    def unheld(self, trained: Sequence[tuple[torch.Tensor, str]]) -> list[str]:
        """The names of the ``trained`` parameters (those that got a gradient in a step, with their
        names) that no optimizer that stepped holds, and that kept their values and version through
        at least two steps of the optimizers holding the others, getting a gradient at each captured
        step since (a parameter not in ``trained`` starts over)."""
        try:
            seen = list(self._seen.items())
            holds = [(opt, n, {id(p) for group in opt.param_groups for p in group["params"]}) for opt, n in seen]
        except Exception:  # an optimizer of the user's own kind, with param_groups of another shape
            return []
        held = {i for _, _, ids in holds for i in ids}
        ours = {id(p) for p, _ in trained}
        steps = {id(opt): n for opt, n, _ in holds}
        training = [(id(opt), n) for opt, n, ids in holds if ids & ours]  # the optimizers of this model
        kept: dict[int, _Kept] = {}
        names: list[str] = []
        for p, name in trained:
            if id(p) in held or not isinstance(p, torch.nn.Parameter):
                continue
            now = fingerprint(p)
            if now is None:
                continue
            then = self._kept.get(id(p))
            if then is not None and then.ref() is p and then.version == p._version and torch.equal(then.print, now):
                kept[id(p)] = then
                if sum(n - then.steps.get(i, 0) for i, n in training) >= _STEPS:
                    names.append(name)
            else:
                kept[id(p)] = _Kept(weakref.ref(p), now, p._version, steps)
        self._kept = kept
        return names

    def note(self, step: int, left: Sequence[str]) -> str | None:
        """What the graph of ``step`` says of the parameters in ``left`` (:meth:`unheld`)."""
        if not left:
            return None
        listed = ", ".join(left[:_SHOWN]) + (f" and {len(left) - _SHOWN} more" if len(left) > _SHOWN else "")
        kinds = ", ".join(sorted({type(opt).__name__ for opt in list(self._seen)}))
        one = len(left) == 1
        it, its, they = ("it", "its", "it has") if one else ("them", "their", "they have")
        return (
            f"{listed} got a gradient in step {step} and the steps before, but no optimizer stepped {it} since "
            f"the debugger attached ({kinds} stepped the rest of the model), and {its} values stayed the same "
            f"through those steps: {they} not trained since. If {'it is' if one else 'they are'} in an optimizer "
            "that steps less often (every k batches) or skipped its steps (a GradScaler skips a step on inf/NaN "
            f"gradients), that is expected; if in none, pass {it} to the optimizer (e.g. "
            "torch.optim.SGD(model.parameters(), ...)), or freeze with requires_grad_(False) what should not "
            f"train. Meanwhile {its} .grad adds up unless the loop zeroes it."
        )
