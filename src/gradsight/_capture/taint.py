"""The taint trace behind ``why()``: re-run the forward under a ``TorchFunctionMode`` that follows
every value computed from a leaf, autograd or not. The first call whose inputs carry the leaf's
data with ``requires_grad`` but whose outputs lose it is where the path breaks (``detach``,
``.data``, a ``no_grad`` or ``inference_mode`` region, a non-differentiable op such as ``argmax``,
or ``.item()`` / ``float()`` / ``.tolist()`` / ``.numpy()`` handing the values to Python, followed
into the tensor made of them again by taint_numbers.py); a leaf whose values never reach the loss is
"not on the path".
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree

from ..graph import Why
from . import detach as _detach
from . import taint_grads as _grads
from . import taint_numbers as _numbers
from . import taint_text as _text
from . import whatif as _whatif
from .modules import compiling
from .source import INTERNAL_ROOTS, short_path
from .text import with_article

# Attributes whose reading or setting is bookkeeping, not a use of the values: an optimizer's
# zero_grad sets .grad of every parameter, a shape check reads .shape. (.data is a use: a break.)
_BOOKKEEPING = frozenset({"grad", "requires_grad", "is_leaf", "grad_fn", "_version", "shape", "dtype", "device",
                          "layout", "ndim", "names", "_backward_hooks", "retains_grad"})  # fmt: skip


def _bookkeeping(func: Any) -> bool:
    return getattr(func, "__name__", "") in ("__get__", "__set__", "__delete__") and getattr(
        getattr(func, "__self__", None), "__name__", None) in _BOOKKEEPING  # fmt: skip


@dataclass(frozen=True)
class _Break:
    reason: str
    op: str
    source: str | None
    in_checkpoint: bool  # inside torch.utils.checkpoint's forward (its reentrant no_grad)
    toggled: _Toggled | None  # the what-if toggle that made it, when one did
    after: _Break | None = None  # a conversion's: the break its values carried already (.detach().numpy())


@dataclass(frozen=True)
class _Toggled:
    """A what-if toggle that cut the path: a module run under no_grad / inference_mode, a module's
    output detached, or a cell variable detached (``module`` is then the variable's name)."""

    kind: str  # "scope" | "module_detach" | "variable_detach"
    module: str


# A module's path in the traced code (None: not known), to name a module a what-if toggle applies to.
Namer = Callable[[Any], "str | None"]

# The frames of gradsight's own toggles: a detach made in one of them is the what-if's, not the user's.
_DETACH_VARIABLE = _whatif.detach_variable.__code__
_DETACH_OUTPUT = _detach.detach_output.__code__

# The taint traces running now (innermost last): ``follow`` starts following a value in the innermost.
_ACTIVE: list[_Taint] = []


def follow(value: Any) -> None:
    """Follow ``value`` (a tensor a re-run of a cell just bound) from here on, as the traced leaf: the
    re-run makes a new tensor where the first run made the user's (``a = torch.ones(3, requires_grad=True)``)."""
    if _ACTIVE and isinstance(value, torch.Tensor):
        _ACTIVE[-1].start(value)


class _Taint(TorchFunctionMode):
    """Follows every value computed from ``start``; notes where requires_grad is lost, and which of
    those losses each followed value descends from (a value logged under ``no_grad`` loses it too,
    but only a loss that reaches the roots is why the leaf got no gradient)."""

    def __init__(self, start: torch.Tensor | None, outer: FrameType | None = None,
                 namer: Namer | None = None) -> None:  # fmt: skip
        super().__init__()
        self.tainted: dict[int, torch.Tensor] = {}
        self.carries: dict[int, frozenset[int]] = {}  # id -> indices into breaks
        self.starts: dict[int, torch.Tensor] = {}
        self.used = False
        self.breaks: list[_Break] = []
        self.outer = outer  # the frame that runs the forward: no user code above it
        self.namer = namer  # a module's path, to name a toggled module
        self.numbers = _numbers.Numbers()  # Python numbers, lists and NumPy arrays made from followed values
        self.maybe: _Break | None = None  # the conversion a tensor made of Python numbers may come from
        self.existing: _numbers.Existing | None = None  # the memory the user's code held at that conversion
        self.differentiated: list[torch.Tensor] = []  # followed values a backward started from (a loss)
        self.plain: set[int] = set()  # ids of followed values made without requires_grad (healed: _healed)
        if start is not None:
            self.start(start)

    def start(self, t: torch.Tensor) -> None:
        """Follow ``t`` as the leaf itself (it is no result of the forward)."""
        self.tainted[id(t)] = t
        self.carries[id(t)] = frozenset()
        self.starts[id(t)] = t

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if compiling():  # invisible to dynamo (see modules._SharedHooks)
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        grad_on, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
        out = func(*args, **kwargs)
        given = _pytree.tree_flatten((args, kwargs))[0]
        hit = [t for t in given if isinstance(t, torch.Tensor) and self.tainted.get(id(t)) is t]
        fed = self.numbers.fed(given, self.tainted) if self.numbers else []
        if hit and _differentiates(func):  # its first argument: what it starts from, not inputs=/grad_tensors=
            first = _tensors(args[0] if args else kwargs.get(_DIFFERENTIATES[func.__name__]))
            self.differentiated += [t for t in first if self.tainted.get(id(t)) is t]
        if not (hit or fed) or _bookkeeping(func):
            if self.numbers.converted and not (hit or fed):
                self._numbers_back(func, given, out)
            return out
        if self.plain:
            for t in hit:
                self._heal(t)
        self.used = self.used or bool(hit)
        to_python = _numbers.converts(func)  # .item(), float(), .tolist(), .numpy(): no tensor out
        outs = [] if to_python else _tensors(out)  # (not the millions of numbers of a big .tolist())
        if getattr(func, "__name__", "") == "__setitem__" and args and isinstance(args[0], torch.Tensor):
            outs = [args[0]]  # buf[i] = value: what is written flows into buf
        carried = frozenset().union(*(self.carries[id(t)] for t in hit), *fed)
        lost = any(t.requires_grad for t in hit) and not any(t.requires_grad for t in outs)
        if lost and (outs or to_python):
            frame = sys._getframe(1)
            toggled = _toggled(frame, not grad_on or inference, self.namer)
            reason = _reason(func, outs, grad_on, inference) if outs else "detach"
            in_checkpoint = not grad_on and _inside_checkpoint(frame)
            self.breaks.append(_Break(reason, _op_name(func), _source(frame, self.outer), in_checkpoint, toggled))
            carried |= {len(self.breaks) - 1}
        # a gradient taken of followed values that all had their graph (no cut among them): its own graph says
        # whether it depends on them (taint_grads.py)
        each = self._through_grad(outs) if outs and not lost and not carried and _grads.is_grad(func) else None
        for i, t in enumerate(outs):
            before = self.carries.get(id(t)) if self.tainted.get(id(t)) is t else None
            mine = carried if each is None else each[i]
            self.tainted[id(t)] = t
            self.carries[id(t)] = mine if before is None else before | mine  # in place: both histories
            (self.plain.discard if t.requires_grad else self.plain.add)(id(t))
        if to_python:
            self.numbers.keep(out, carried, max((t.numel() for t in hit), default=0))
            if self.maybe is None and lost:
                self.maybe = replace(self.breaks[-1])  # a copy: told apart by identity
            elif self.maybe is None and carried:  # cut already (.detach().numpy()): the round trip may be the cut
                earlier = self.breaks[min(carried)]
                source = _source(sys._getframe(1), self.outer)
                self.maybe = _Break(earlier.reason, _op_name(func), source, False, None, after=earlier)
            if self.maybe is not None and self.existing is None:
                self.existing = _numbers.Existing(sys._getframe(1), self.outer)
        return out

    def _heal(self, t: torch.Tensor) -> None:
        """``t`` was made without requires_grad and has a graph now: a reentrant checkpoint's output,
        which its autograd Function gave one after the region ran under no_grad. The no_grad inside the
        region is then no cut (its backward re-runs the region with grad on): ``t`` no longer carries it."""
        if id(t) in self.plain and t.grad_fn is not None:
            self.plain.discard(id(t))
            breaks = self.breaks
            self.carries[id(t)] = frozenset(
                i for i in self.carries[id(t)] if not (breaks[i].in_checkpoint and breaks[i].reason == "no_grad")
            )

    def _through_grad(self, outs: list[torch.Tensor]) -> list[frozenset[int]]:
        """What each gradient ``torch.autograd.grad`` returned carries: nothing new where its graph reaches
        a followed value; one that does not depend on them at all (they drop out when differentiating)
        carries a break of its own, which ``why()`` names when it reaches the loss."""
        depends = _grads.depends(outs, self.tainted)
        if all(depends):
            return [frozenset()] * len(outs)
        self.breaks.append(_Break("not_on_path", "grad", _source(sys._getframe(2), self.outer), False, None))
        return [frozenset() if d else frozenset({len(self.breaks) - 1}) for d in depends]

    def _numbers_back(self, func: Any, given: list[Any], out: Any) -> None:
        """Python numbers reach torch after a conversion, by ways not followed (plain Python or NumPy
        arithmetic): a tensor made of them (``torch.tensor(x.item() * 2)``; after a conversion to
        NumPy, one on memory torch did not allocate: ``torch.from_numpy(a * 2)``) is followed as
        possibly made of the conversion."""
        if self.maybe is None or self.existing is None:
            return
        arrays = self.maybe.op in _numbers.TO_ARRAYS and _numbers.from_array(given, self.existing)
        if not (arrays or _numbers.made_from_python(func, given, self.existing)):  # torch.from_numpy(a * 2)
            return
        if all(b is not self.maybe for b in self.breaks):
            self.breaks.append(self.maybe)
        index = next(i for i, b in enumerate(self.breaks) if b is self.maybe)
        for t in _tensors(out):
            self.tainted[id(t)] = t
            self.carries[id(t)] = frozenset({index})

    def reaching(self, roots: list[torch.Tensor]) -> tuple[bool, list[_Break]]:
        """(whether the leaf's values reach a root, the breaks on the way there, first first)."""
        reached = [r for r in roots if self.tainted.get(id(r)) is r and self.starts.get(id(r)) is not r]
        for r in reached if self.plain else ():
            self._heal(r)  # checkpoint(f, x) itself the loss
        on_path = sorted(frozenset().union(*(self.carries[id(r)] for r in reached)))
        return bool(reached), [self.breaks[i] for i in on_path]


def trace(name: str, leaf: torch.Tensor | None, forward: Callable[[], list[torch.Tensor]],
          namer: Namer | None = None) -> Why | None:  # fmt: skip
    """Re-run ``forward`` (which returns the roots) following ``leaf``'s values; explain the break.

    Only a break whose result reaches the roots counts: ``log.append(w.norm())`` under ``no_grad``
    loses requires_grad too, but nothing of it reaches the loss. ``leaf`` None: the forward starts
    following the leaf itself (:func:`follow`, a cell's re-run binding it); None when it never did.
    ``namer``: a module's path (None: unknown), to name a module a what-if toggle applies to."""
    mode = _Taint(leaf, outer=sys._getframe(), namer=namer)
    _ACTIVE.append(mode)
    try:
        with mode:
            results = forward()
    finally:
        _ACTIVE.remove(mode)
    if not mode.starts:
        return None
    roots = _results([t for t in results if mode.starts.get(id(t)) is not t])
    if not any(t.grad_fn is not None for t in roots):  # a cell's loss bound to no name: what it differentiated
        roots += mode.differentiated
    reached, on_path = mode.reaching(roots)
    if on_path:  # a certain cut is named before a guessed round trip (NumPy arithmetic cannot be followed)
        found = next((b for b in on_path if b is not mode.maybe), on_path[0])
        guessed = found is mode.maybe
        also = mode.maybe if not guessed and any(b is mode.maybe for b in on_path) else None
        return _text.worded(name, found, guessed, also)
    if not mode.used:
        return Why(name, "unused", f"{name} is never used in the forward: nothing computed from it, so it cannot get a "
                   "gradient (an unused parameter or branch?).")  # fmt: skip
    if not reached:
        return Why(name, "not_on_path", f"{name} is used in the forward, but nothing computed from it reaches the loss "
                   "(the root): it is not on the path, so backward never gets to it.")  # fmt: skip
    return Why(name, "unknown", f"{name}'s values reach the loss, yet it got no gradient; gradsight could not find "
               "where the path breaks.")  # fmt: skip


def _results(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The results among what the forward returned: those with a graph, when some have one (a cell
    returns every tensor it bound; ``u = w * 2`` under ``no_grad`` beside the loss is not a result,
    as ``cell._roots`` does not count it either)."""
    with_graph = [t for t in tensors if t.grad_fn is not None]
    return with_graph or tensors


# torch's backward calls (Tensor.backward; torch.autograd.backward and grad, or a cell spy's wrapper of
# them, which keeps their names) -> the name of the argument holding what they differentiate
_DIFFERENTIATES = {"backward": "tensors", "grad": "outputs"}


def _differentiates(func: Any) -> bool:
    return getattr(func, "__name__", None) in _DIFFERENTIATES and getattr(func, "__module__", None) in (
        "torch._tensor", "torch.autograd")  # fmt: skip


def _toggled(frame: FrameType | None, grad_off: bool, names: Namer | None) -> _Toggled | None:
    """The what-if toggle running at ``frame``, innermost first: a cell variable's or a module
    output's detach (whatif.detach_variable, detach.detach_output), or, with grad off, a module a
    toggle put under no_grad / inference_mode (it has whatif._enter's pre-hook); else None."""
    while frame is not None:
        code = frame.f_code
        if code is _DETACH_VARIABLE:
            return _Toggled("variable_detach", str(frame.f_locals.get("name")))
        if code is _DETACH_OUTPUT:
            module = frame.f_locals.get("module")
            return _Toggled("module_detach", _module_label(module, names))
        module = frame.f_locals.get("self") if grad_off and code.co_name == "_call_impl" else None
        if isinstance(module, torch.nn.Module):
            hooks = getattr(module, "_forward_pre_hooks", {}).values()
            if any(getattr(h, "__module__", None) == _whatif.__name__ for h in hooks):
                return _Toggled("scope", _module_label(module, names))
        frame = frame.f_back
    return None


def namer_of(modules: Iterable[tuple[str, torch.nn.Module]]) -> Namer:
    """A :data:`Namer` from (path, module) pairs (the root ``""`` has no name to give)."""
    paths = {id(m): n for n, m in modules if n}
    return lambda module: paths.get(id(module))


def _module_label(module: Any, names: Namer | None) -> str:
    """``bn (BatchNorm1d)`` when the module's path is known, else ``a BatchNorm1d``."""
    kind = type(module).__name__
    name = names(module) if names is not None else None
    return f"{name} ({kind})" if name else with_article(kind)


_CHECKPOINT_FILE = os.path.join("torch", "utils", "checkpoint.py")


def _inside_checkpoint(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(_CHECKPOINT_FILE):
            return True
        frame = frame.f_back
    return False


def _reason(func: Any, outs: list[torch.Tensor], grad_on: bool, inference: bool) -> str:
    name = _op_name(func)
    if name == "data":
        return "data"
    if name in ("detach", "detach_"):
        return "detach"
    if inference:
        return "inference_mode"
    if not grad_on:
        return "no_grad"
    if all(not (t.is_floating_point() or t.is_complex()) for t in outs):
        return "non_differentiable"
    return "detach"


def _op_name(func: Any) -> str:
    owner = getattr(func, "__self__", None)
    if getattr(func, "__name__", "") == "__get__" and owner is not None:
        return str(getattr(owner, "__name__", "attribute"))
    return str(getattr(func, "__name__", func))


def _source(frame: FrameType | None, outer: FrameType | None = None) -> str | None:
    """The user's line that ran the op: the first frame outside torch and gradsight, below ``outer``
    (the frame that started the forward; above it is whoever asked ``why()``, not the forward)."""
    while frame is not None and frame is not outer and frame.f_code.co_filename.startswith(INTERNAL_ROOTS):
        frame = frame.f_back
    if frame is None or frame is outer:
        return None
    import linecache

    text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f"{short_path(frame.f_code.co_filename)}:{frame.f_lineno}  {text}".rstrip()


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in _pytree.tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]
