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
from . import taint_numbers as _numbers
from . import whatif as _whatif
from .modules import compiling
from .source import INTERNAL_ROOTS, short_path

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
        if not (hit or fed) or _bookkeeping(func):
            if self.numbers.converted and not (hit or fed):
                self._numbers_back(func, given, out)
            return out
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
        for t in outs:
            before = self.carries.get(id(t)) if self.tainted.get(id(t)) is t else None
            self.tainted[id(t)] = t
            self.carries[id(t)] = carried if before is None else before | carried  # in place: both histories
        if to_python:
            self.numbers.keep(out, carried, max((t.numel() for t in hit), default=0))
            if self.maybe is None and lost:
                self.maybe = replace(self.breaks[-1])  # a copy: told apart by identity
        return out

    def _numbers_back(self, func: Any, given: list[Any], out: Any) -> None:
        """Python numbers reach torch after a conversion, by ways not followed (plain Python arithmetic):
        a tensor made of them is followed as possibly made of the conversion."""
        if self.maybe is None or not _numbers.made_from_python(func, given):
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
    reached, on_path = mode.reaching(roots)
    if on_path:
        found = on_path[0]
        toggled = found.toggled
        source = found.source
        if toggled is not None and toggled.kind == "variable_detach":
            text, source = _TOGGLED_VARIABLE.format(name=name, variable=toggled.module), None
        elif toggled is not None and toggled.kind == "module_detach":
            text = _TOGGLED_DETACH.format(name=name, module=toggled.module)
        elif toggled is not None and found.reason in ("no_grad", "inference_mode"):
            text = _TOGGLED.format(name=name, op=found.op, module=toggled.module, kind=found.reason)
        elif found.in_checkpoint and found.reason == "no_grad":
            text = _CHECKPOINT.format(name=name)
        elif found is mode.maybe:  # a tensor made of Python numbers after the conversion: likely, not sure
            return Why(name, "not_on_path", _LEFT_TORCH.format(name=name, op=_numbers.SPELLING[found.op]),
                       source=source)  # fmt: skip
        elif found.op in _numbers.CONVERSIONS:
            text = _TO_PYTHON.format(name=name, op=_numbers.SPELLING[found.op])
        else:
            text = _BREAK[found.reason].format(name=name, op=found.op)
        return Why(name, found.reason, text, source=source)  # type: ignore[arg-type]
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
    return f"{name} ({kind})" if name else f"a {kind}"


_CHECKPOINT_FILE = os.path.join("torch", "utils", "checkpoint.py")


def _inside_checkpoint(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.endswith(_CHECKPOINT_FILE):
            return True
        frame = frame.f_back
    return False


_TOGGLED = (
    "{name}'s path to the loss goes through {op} inside {module}, which this re-run's {kind} toggle runs under "
    "torch.{kind}(): autograd recorded nothing there. That is gradsight's what-if, not your code: turn the "
    "toggle off to get the gradient back."
)

_TOGGLED_DETACH = (
    "{name}'s path to the loss goes through {module}, whose output this re-run's detach toggle detaches: "
    "nothing flows back through it. That is gradsight's what-if, not your code: turn the toggle off to get "
    "the gradient back."
)

_TOGGLED_VARIABLE = (
    "{name}'s path to the loss goes through {variable}, which this re-run's detach toggle detaches right where "
    "the cell assigns it: nothing flows back through it. That is gradsight's what-if, not your code: re-run "
    "without detach=['{variable}'] to get the gradient back."
)

_TO_PYTHON = (
    "{name}'s path to the loss is cut by {op}: it turns a tensor into a Python number (or a list or NumPy "
    "array of them), which has no graph, so the tensor made from it again (torch.tensor(...)) starts a new "
    "graph with nothing behind it and no gradient flows back to {name}. Keep the value a tensor: use it "
    "directly instead of {op} (and .detach() only where you mean to stop the gradient)."
)

_LEFT_TORCH = (
    "{name} is used in the forward, but nothing gradsight could follow from it reaches the loss. Its values "
    "leave autograd at {op}, which turns a tensor into a Python number (or a list or NumPy array): if the loss "
    "uses a tensor made from that number (torch.tensor(...) after plain Python arithmetic), that is the cut — "
    "a number has no graph. Keep the value a tensor to get a gradient."
)

_CHECKPOINT = (
    "{name}'s path to the loss goes through torch.utils.checkpoint with use_reentrant=True, which runs its "
    "function under torch.no_grad() and rebuilds the graph during backward only when one of the function's "
    "inputs requires grad. None does here, so its output has no graph and {name} gets no gradient. Pass "
    "use_reentrant=False (PyTorch's recommendation), or make an input require grad (x.requires_grad_())."
)

_BREAK = {
    "detach": "{name}'s path to the loss is cut by {op}(): the result no longer requires grad, so nothing "
    "flows back to {name}. Remove the detach (or detach only what you mean to).",
    "data": "{name}'s path to the loss goes through .data, which hides the operation from autograd "
    "(like detach, but silently). Use the tensor itself, or .detach() if you mean it.",
    "no_grad": "{name}'s path to the loss goes through {op} run under torch.no_grad(): autograd recorded "
    "nothing there, so the gradient cannot flow back. Move that code out of no_grad.",
    "inference_mode": "{name}'s path to the loss goes through {op} run under torch.inference_mode(): "
    "autograd recorded nothing there. Move that code out of inference_mode.",
    "non_differentiable": "{name}'s path to the loss goes through {op}, which is not differentiable "
    "(its output is integer or bool: argmax, a comparison, an integer cast): no gradient flows "
    "back through it. Use a differentiable relaxation (softmax instead of argmax, …).",
}


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
