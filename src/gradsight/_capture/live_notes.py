"""What a live step's graph says beyond its gradients: a backward that raised (:func:`failure`; one
that raised above the step's outputs, in the loss: :func:`reaches`), gradients accumulating across
optimizer steps (:func:`accumulation_note`) or added up within one (:func:`added_note`), and what a
live re-run computes (:func:`rerun_note`).

Live mode only sees the model: the user's loss and optimizer are theirs. A backward that raised is
known from the step's side (a pass began and never ended, and its thread went on); the exception
itself only where the shell kept it (IPython's ``sys.last_value`` after it showed the traceback).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import torch

from .facts import Versions

_AUTOGRAD = os.path.join("torch", "autograd")
_SHOWN = 6  # parameters named in a note
_LONGEST = 1000  # characters of an exception's message kept (torch's dispatcher errors run to kilobytes)
_RUN_BACKWARD = torch.autograd.graph._engine_run_backward.__code__  # every backward() and grad() runs it
# The frames whose locals hold the tensors a backward starts from, by the name torch gives them: the
# engine's, and (errors in the arguments, raised before the engine starts: a non-scalar loss, a
# gradient of the wrong shape) torch.autograd.backward's and _make_grads'.
_STARTED = (
    (torch.autograd.graph._engine_run_backward, "t_outputs"),
    (getattr(torch.autograd, "_make_grads", None), "outputs"),
    (torch.autograd.backward, "tensors"),
)
_STARTS = {code: name for fn, name in _STARTED if (code := getattr(fn, "__code__", None)) is not None}
_WALKED = 100_000  # nodes walked looking for a step's outputs in the graph of a backward that raised


def last_exception() -> BaseException | None:
    """The exception the shell last showed a traceback for (IPython sets it before ``post_run_cell``)."""
    e = getattr(sys, "last_exc", None)
    return e if isinstance(e, BaseException) else getattr(sys, "last_value", None)


def raised_in_backward(before: int) -> BaseException | None:
    """The exception shown since the one whose ``id`` is ``before``, if it came out of a backward
    (its traceback passes through torch.autograd); None when no shell kept one (a script's
    ``try``/``except``, marimo)."""
    e = last_exception()
    if e is None or id(e) == before:
        return None
    tb = e.__traceback__
    while tb is not None:
        if _AUTOGRAD in tb.tb_frame.f_code.co_filename:
            return e
        tb = tb.tb_next
    return None


def node_key(node: Any) -> tuple[str, int]:
    """What tells a graph node apart without holding it (holding one keeps its graph's saved tensors
    alive): its name and sequence number (per thread, counted as nodes are made)."""
    return node.name(), node._sequence_nr()


def _roots_of(e: BaseException) -> Iterator[Any]:
    """The graph nodes the backward calls in ``e``'s traceback started from (their frames keep them)."""
    tb = e.__traceback__
    while tb is not None:
        name = _STARTS.get(tb.tb_frame.f_code)
        if name is not None:
            outs = tb.tb_frame.f_locals.get(name, ())
            for out in (outs,) if isinstance(outs, torch.Tensor) else outs:
                node = out.grad_fn if isinstance(out, torch.Tensor) else getattr(out, "node", None)
                if node is not None:
                    yield node
        tb = tb.tb_next


def _engine_ran(e: BaseException) -> bool:
    """Did the backward that raised ``e`` start the engine (not an error in its arguments)?"""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is _RUN_BACKWARD:
            return True
        tb = tb.tb_next
    return False


def reaches(e: BaseException, keys: Collection[tuple[str, int]]) -> bool:
    """Did the backward that raised ``e`` run over a graph holding a node of ``keys`` (:func:`node_key`:
    a step's outputs)? It may have raised above them (in the loss) before any of the step's hooks ran."""
    if not keys:
        return False
    try:
        todo, seen = list(_roots_of(e)), set[tuple[str, int]]()
        while todo and len(seen) < _WALKED:
            node = todo.pop()
            key = node_key(node)
            if key in keys:
                return True
            if key not in seen:
                seen.add(key)
                todo.extend(n for n, _ in node.next_functions if n is not None)
    except Exception:  # a courtesy: the step is then not shown as failed
        return False
    return False


def under_marimo() -> bool:
    """Is this a marimo notebook's kernel? (marimo keeps a cell's exception to itself: no ``sys.last_value``)"""
    marimo = sys.modules.get("marimo")
    try:
        return marimo is not None and bool(marimo.running_in_notebook())
    except Exception:
        return False


def describe(e: BaseException | None) -> str:
    """``RuntimeError: ...`` in one paragraph, or what is known without the exception."""
    if e is None and under_marimo():
        return "an exception (marimo keeps no traceback gradsight can read; see the cell's output)"
    if e is None:
        return "an exception gradsight did not see (your code caught it, or no shell kept it)"
    text = " ".join(str(e).split())
    if len(text) > _LONGEST:
        text = text[:_LONGEST] + "…"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def failure(step: int, e: BaseException | None, *, reached: bool = True) -> tuple[str, str]:
    """A step whose backward raised: the view's error, and the graph's note (``reached``: a node of the
    step's graph ran before it raised; not when it raised above the model's output, in the loss)."""
    what = describe(e).rstrip(".")
    error = f"The backward of live step {step} raised {what}"
    if not reached and e is not None and not _engine_ran(e):
        return error, (
            f"Step {step}'s backward call raised ({what}) before the backward began: torch checks the call's "
            "arguments first (a loss that is not a scalar needs a gradient argument, e.g. loss.mean().backward() or "
            "loss.backward(torch.ones_like(loss)); a gradient must have its output's shape). No node of this graph "
            "ran, and nothing reached .grad. Fix the call: the next step whose backward finishes replaces this one."
        )
    if not reached:
        return error, (
            f"Step {step}'s backward raised ({what}) above the model's output (in the loss, or a function applied "
            "to the output), before it reached the model: no node of this graph ran, and no gradient reached .grad "
            "from it. Fix the error: the next step whose backward finishes replaces this one."
        )
    note = (
        f"Step {step}'s backward raised ({what}) and stopped before it ended. The graph shows the nodes it ran "
        "before it stopped; nodes and leaves it never reached got no gradient, and .grad holds only what reached "
        "it before the error. Fix the error: the next step whose backward finishes replaces this one."
    )
    return error, note


def _listed(held: Sequence[tuple[str, float]]) -> str:
    listed = ", ".join(f"{name} (norm {norm:.4g})" for name, norm in held[:_SHOWN])
    more = len(held) - _SHOWN
    return listed + (f" and {more} more" if more > 0 else "")


def accumulation_note(step: int, held: Sequence[tuple[str, float]]) -> str | None:
    """Parameters whose ``.grad`` an optimizer step used holding step ``step``'s gradient added to one
    the optimizer step before had used (nothing zeroed it between): with the norm ``.grad`` held when
    that step's backward began (:meth:`.Optimizers.accumulated`)."""
    if not held:
        return None
    return (
        f"Gradients are accumulating across steps: the optimizer step after step {step} used .grad of "
        f"{_listed(held)} holding step {step}'s gradient added to the one the optimizer step before had already "
        f"used (the norms: what .grad held when step {step}'s backward began). Nothing zeroed .grad between the "
        "two optimizer steps. Call optimizer.zero_grad() (or set .grad = None) before each backward (or after "
        "each optimizer step)."
    )


def added_note(step: int, held: Sequence[tuple[str, float]]) -> str | None:
    """Parameters whose ``.grad`` held a nonzero gradient when the step's backward began, from an
    earlier backward since the last optimizer step: several backward calls before one optimizer step
    (a GAN's real and fake losses, gradient accumulation over batches). Usually meant: said, not warned."""
    if not held:
        return None
    return (
        f"Step {step}'s backward added to the gradient an earlier backward call since the last optimizer step "
        f"left in .grad of {_listed(held)}: .grad holds their sum (several losses before one optimizer step, "
        f"or gradient accumulation over batches). The gradient shown flowing into each is step {step}'s own."
    )


def nonzero(norms: Mapping[str, float | None]) -> list[tuple[str, float]]:
    """The (name, norm) pairs of ``norms`` that are not zero (NaN counts: it is no zero gradient)."""
    return [(name, n) for name, n in norms.items() if n is not None and (n != 0 or math.isnan(n))]


def changed_parameters(then: Versions, now: Versions) -> int:
    """How many of the parameters in ``then`` (id, version at the step's forward) were written since
    (an optimizer step bumps every parameter it updates), or are gone."""
    versions = dict(now)
    return sum(1 for i, v in then if versions.get(i) != v)


def rerun_note(step: int, then: Versions, now: Versions) -> str:
    """What a live re-run of ``step`` computes. Live mode does not know the user's loss: a re-run
    replays the step's batch through the model as it is now and starts its backward from the
    gradient step ``step``'s loss gave the model's output then (dL/d output, recorded at that step).
    ``then`` and ``now``: the parameters' versions at the step's forward and now."""
    text = (
        f"A live re-run replays step {step}'s batch through the model's current parameters and starts its "
        f"backward from the output gradient step {step} recorded (dL/d output of step {step}: gradsight does "
        "not know your loss, so it reuses that one)."
    )
    changed = changed_parameters(then, now)
    if not changed:
        return text + f" The parameters are those step {step} ran on: its gradients are step {step}'s."
    which = f"{changed} of {len(then)} parameters" if changed < len(then) else f"all {changed} parameters"
    return text + (
        f" The parameters changed since step {step} was recorded ({which} written since: optimizer.step()?), so "
        f"the model's output is no longer the one that gradient belongs to: the numbers are step {step}'s dL/d "
        "output pushed back through the model as it is now, the gradient of no real loss. To see the step "
        "itself with toggles, re-run before optimizer.step() (stop after loss.backward(), call dbg.rerun(...), "
        "then step)."
    )
