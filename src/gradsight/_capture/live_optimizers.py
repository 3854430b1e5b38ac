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
the next step shown). A ``.grad`` written in between still holds the sum when it is that sum times one
scale shared by all the step's rewritten ``.grad`` (``clip_grad_norm_``'s coefficient, a ``GradScaler``'s
``1/scale``: :func:`_rescaled`, told by a few sampled elements and the norm kept at the pass's
end); zeroed (``zero_grad(set_to_none=False)``) or not one scale (a new backward after zeroing)
it does not. Said of nothing else: ``clip_grad_value_`` that clamps some elements, clipping each
module with its own coefficient, or a sum whose sampled elements say too little (one element in
all) leave the forgotten ``zero_grad()`` unsaid.
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
# A .grad's norm rescaled in place vs its norm before, times the coefficient: a float32 sum over all
# elements strays more than they do (5e-4 for 5e7 elements on the CPU)
_NORM_RTOL = 1e-2


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


def _grad_print(g: torch.Tensor) -> torch.Tensor | None:
    """A few of ``g``'s elements, evenly spaced, and its norm, in float32 or float64 on ``g``'s device
    (no sync: read in the user's backward and optimizer step; a float16 norm overflows at 65504);
    None: not a dense floating-point tensor. A rescale by ``c > 0`` multiplies each entry by ``c``."""
    try:
        if not g.is_floating_point() or g.layout != torch.strided or g.is_meta or not g.numel():
            return None
        with torch.no_grad():
            flat = g.detach().reshape(-1)
            wide = torch.promote_types(g.dtype, torch.float32)
            sample = flat[:: max(1, flat.numel() // _SAMPLED)][:_SAMPLED]
            norm = torch.linalg.vector_norm(flat, dtype=None if wide == g.dtype else wide)
            return torch.cat([sample.to(wide), norm.reshape(1)])
    except Exception:  # a nested or functorch-wrapped .grad: not told
        return None


def _rtol(dtype: torch.dtype) -> float:
    """How far an element of ``dtype`` rescaled in place (once or twice: an unscale, a clip) may stray
    from the rescale of the value it had: a few ulps."""
    return 4 * torch.finfo(dtype).eps if dtype.is_floating_point else 0.0


def _host(prints: Sequence[torch.Tensor]) -> torch.Tensor:
    """``prints`` concatenated on the CPU, in float64: one copy (and sync) per device they are on."""
    if len({p.device for p in prints}) == 1:
        return torch.cat(list(prints)).cpu().double()
    return torch.cat([p.cpu() for p in prints]).double()


def _rescaled(group: Sequence[tuple[_Added, torch.Tensor]]) -> list[_Added]:
    """Those of ``group`` (one optimizer step's ``.grad`` that held a sum across steps and were
    written since: each with its :func:`_grad_print` at the step) that are still that sum times one
    ``c > 0`` shared by all (``clip_grad_norm_``'s coefficient, a ``GradScaler``'s ``1/scale``).

    ``c`` is read off each one's largest sampled element (off its norm where none is nonzero); every
    sampled element must be ``c`` times its own within a few ulps, each norm within
    :data:`_NORM_RTOL`, and there must be two nonzero sampled elements in all (one element is a
    multiple of any other). A sum that held zeros only is said of none. Else none: zeroed, a new
    backward, a clamp, a coefficient per module (not told)."""
    kept = [(a, then, now) for a, now in group if (then := a.print) is not None and then.numel() == now.numel()]
    if len(kept) != len(group) or not group:
        return []
    try:
        with torch.no_grad():
            sizes = torch.tensor([then.numel() for _, then, _ in kept])
            both = _host([t for _, t, _ in kept] + [n for _, _, n in kept])  # (one sync)
            then, now = both[: both.numel() // 2], both[both.numel() // 2 :]
            if not (then.isfinite().all() and now.isfinite().all()):
                return []
            ends = sizes.cumsum(0) - 1  # each one's norm, after its samples
            sampled = torch.ones_like(then, dtype=torch.bool)
            sampled[ends] = False
            owners = torch.repeat_interleave(torch.arange(len(kept)), sizes)[sampled]
            was, is_, norm_was, norm_is = then[sampled], now[sampled], then[ends], now[ends]
            if int((was != 0).sum()) < 2:
                return []
            scale = torch.zeros_like(norm_was).scatter_reduce(0, owners, was.abs(), "amax")  # largest sampled
            lead = (was != 0) & (was.abs() == scale[owners])
            by_sample = torch.zeros_like(norm_was).scatter_reduce(
                0, owners[lead], is_[lead] / was[lead], "amax", include_self=False
            )
            live, told = norm_was > 0, scale > 0  # (told: live)
            c = torch.where(told, by_sample, norm_is / norm_was.where(live, 1.0))  # (0 for a zero sum)
            rtol = max(a.rtol for a, _, _ in kept)
            ref = c[told].min()
            if bool((c[live] <= 0).any()) or float(c[told].max()) > float(ref) * (1 + 2 * rtol):
                return []
            if bool(((c[live & ~told] - ref).abs() > _NORM_RTOL * ref).any()):
                return []
            if bool(((norm_is - c * norm_was).abs() > _NORM_RTOL * c * norm_was).any()):  # (a zero sum: stays 0)
                return []
            if bool(((is_ - c[owners] * was).abs() > rtol * c[owners] * (was.abs() + scale[owners])).any()):
                return []
            return [a for (a, _, _), one in zip(kept, live.tolist(), strict=True) if one]
    except Exception:
        return []


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
    that ``.grad`` and its version after the step's last pass, the step, the name, the norm
    ``.grad`` held when its backward began (a 0-d tensor: read when the note is made), and the sum's
    :func:`_grad_print` with its dtype's tolerance (a rescale since still holds it)."""

    param: weakref.ref[torch.Tensor]
    grad: weakref.ref[torch.Tensor]
    version: int
    step: int
    name: str
    norm: Any
    print: torch.Tensor | None
    rtol: float


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
        # (under the GIL) per optimizer step, those written since the pass (each with its .grad's print
        # at the step): still the sum if one rescale of it (_rescaled, decided when said: no sync there)
        self._written: list[list[tuple[_Added, torch.Tensor]]] = []
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
                    self._added[id(p)] = _Added(weakref.ref(p), weakref.ref(g), g._version, step, name, norm,
                                                _grad_print(g), _rtol(g.dtype))  # fmt: skip
        except Exception:
            return

    def _stepping(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """Before an optimizer step: the parameters whose ``.grad`` holds a sum across steps
        (:meth:`expect`), unwritten since, are what it uses; the same ``.grad`` written since is kept
        with its print now, for :func:`_rescaled` to tell whether it still is the sum (rescaled)."""
        if not self._added or compiling():
            return
        written: list[tuple[_Added, torch.Tensor]] = []
        try:  # never break the user's optimizer step
            for group in optimizer.param_groups:
                for p in group["params"]:
                    added = self._added.pop(id(p), None)
                    g = p.grad
                    if added is None or added.param() is not p or added.grad() is not g or g is None:
                        continue
                    if g._version == added.version:
                        self._used.append(added)
                    elif added.print is not None and (now := _grad_print(g)) is not None:
                        written.append((added, now))
        except Exception:
            return
        if written:
            self._written.append(written)

    def accumulated(self) -> tuple[int, list[tuple[str, Any]]] | None:
        """The last step an optimizer step used summed with an earlier step's ``.grad`` (its number,
        and each parameter's name and the norm ``.grad`` held when its backward began), once; None:
        none since the last call."""
        used, self._used = self._used, []
        written, self._written = self._written, []
        for group in written:
            used += _rescaled(group)
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
        self._kept, self._grads, self._added, self._used, self._written = {}, {}, {}, [], []

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
