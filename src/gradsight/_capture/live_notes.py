"""What a live step's graph says beyond its gradients: a backward that raised (:func:`failure`),
gradients accumulating across steps (:func:`accumulation_note`), and what a live re-run computes
(:func:`rerun_note`).

Live mode only sees the model: the user's loss and optimizer are theirs. A backward that raised is
known from the step's side (a pass began and never ended, and its thread went on); the exception
itself only where the shell kept it (IPython's ``sys.last_value`` after it showed the traceback).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence

from .facts import Versions

_AUTOGRAD = os.path.join("torch", "autograd")
_SHOWN = 6  # parameters named in a note
_LONGEST = 1000  # characters of an exception's message kept (torch's dispatcher errors run to kilobytes)


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


def describe(e: BaseException | None) -> str:
    """``RuntimeError: ...`` in one paragraph, or what is known without the exception."""
    if e is None:
        return "an exception gradsight did not see (your code caught it, or no shell kept it)"
    text = " ".join(str(e).split())
    if len(text) > _LONGEST:
        text = text[:_LONGEST] + "…"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def failure(step: int, e: BaseException | None) -> tuple[str, str]:
    """A step whose backward raised: the view's error, and the graph's note."""
    what = describe(e).rstrip(".")
    error = f"The backward of live step {step} raised {what}"
    note = (
        f"Step {step}'s backward raised ({what}) and stopped before it ended. The graph shows the nodes it ran "
        "before it stopped; nodes and leaves it never reached got no gradient, and .grad holds only what reached "
        "it before the error. Fix the error: the next step whose backward finishes replaces this one."
    )
    return error, note


def accumulation_note(step: int, held: Sequence[tuple[str, float]]) -> str | None:
    """Parameters whose ``.grad`` already held a nonzero gradient (name, its norm) when the step's
    backward began: the step's backward added to it."""
    if not held:
        return None
    listed = ", ".join(f"{name} (norm {norm:.4g})" for name, norm in held[:_SHOWN])
    more = len(held) - _SHOWN
    listed += f" and {more} more" if more > 0 else ""
    whose = "its" if len(held) == 1 else "their"
    return (
        f"Gradients are accumulating across steps: when step {step}'s backward began, .grad already held a "
        f"gradient for {listed}, and the backward added to it. The gradient shown flowing into each is step "
        f"{step}'s own; {whose} .grad (and the .grad history) holds the sum. Call optimizer.zero_grad() (or set "
        ".grad = None) before each backward, unless you mean to add up several backward calls before an "
        "optimizer step (gradient accumulation over batches, a GAN's real and fake losses)."
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
