"""What a run differentiates and what its graph says about it: the roots (the loss, the model's own
loss output, or every output that requires grad, with ones or ``grad_output=`` as their gradient),
the checks of ``grad_output``, and the notes a graph carries (outputs picked among several, parameters
or inputs the forward edited in place, why there is no graph)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from ..graph import Graph, RootGradient
from ..toggles import Toggles
from .guard import InputGuard, ModuleGuard
from .outputs import flatten_tensors, loss_output
from .tensors import why_no_graph

if TYPE_CHECKING:
    from .run import RunSpec


def picked_note(spec: RunSpec, output: Any, roots: list[torch.Tensor]) -> str | None:
    """What a graph says when gradsight chose among several outputs (no ``loss=`` given)."""
    if spec.loss is not None or len(flatten_tensors(output)) <= len(roots):
        return None
    scalar = len(roots) == 1 and roots[0].numel() == 1
    what = "its loss output" if scalar else "every output that requires grad"
    return (
        f"{spec.what.capitalize()} returned several tensors; gradsight differentiates {what}. "
        "Pass loss=lambda out: ... to choose what to differentiate."
    )


def nonfinite_note(loss: float | None, graph: Graph | None = None) -> str | None:
    """What a graph says when the loss itself is NaN or ±Inf: the forward made it, before any
    backward. Whether its gradients are NaN or Inf too depends on the ops that made it (a constant
    Inf term added to the loss passes every gradient on finite): said from ``graph``'s recorded
    gradients when given (and a backward recorded any), else as a possibility.

    >>> nonfinite_note(float("-inf")).split(": ")[0]
    'The loss is -Inf'
    """
    if loss is None or math.isfinite(loss):
        return None
    what = "NaN" if math.isnan(loss) else ("-Inf" if loss < 0 else "Inf")
    head = f"The loss is {what}: the forward already computed a non-finite value, before any backward ran. "
    if graph is not None and not any(n.grad_in for n in graph.nodes):
        graph = None  # no gradient recorded (the backward raised): nothing to tell from
    if graph is not None and not any(n.nonfinite_gradient for n in graph.nodes):
        return (
            f"{head}Every recorded gradient is finite: the ops that made it pass on a gradient that does not depend "
            "on it (a constant NaN or Inf term added to the loss, or one computed without gradient). The loss is "
            "still no use to log or to compare: look for the term that is not finite."
        )
    spread = (
        "" if graph is not None else " where they depend on it (a constant Inf term added to it leaves them finite)"
    )
    return (
        f"{head}Gradients that flow back through the ops that made it are NaN or Inf too{spread}: an optimizer step "
        "with them writes NaN into the parameters. The nodes marked non-finite show how far it spread; the first of "
        "them in forward order whose saved inputs are finite is where it began (a log or division of 0, an overflow, "
        "a NaN in the batch or in the parameters)."
    )


def edited_note(spec: RunSpec, guard: ModuleGuard) -> str | None:
    """What a graph says when the forward edited parameters in place (``weight.clamp_()`` under
    ``no_grad``): gradsight gives back buffers, random state and ``.grad``, but undoing that would
    take a copy of every parameter before every run."""
    edited = guard.edited()
    if not edited:
        return None
    names = [spec.leaf_names.get(p, "a parameter") for p in edited]
    return (
        f"The forward edited {'this parameter' if len(names) == 1 else 'these parameters'} in place: "
        f"{', '.join(names[:8])}{', …' if len(names) > 8 else ''}. They stay edited, as after any forward of "
        "yours: gradsight puts back buffers, random state and .grad fields, not parameters a forward changes."
    )


def inputs_note(spec: RunSpec, inputs: InputGuard) -> str | None:
    """What a graph says when the forward edited an input in place (``x /= 2``)."""
    if not inputs.changed:
        return None
    names = ", ".join(inputs.changed[:8]) + (", …" if len(inputs.changed) > 8 else "")
    one = len(inputs.changed) == 1
    fix = "Make the forward edit a copy (x = x / 2 rather than x /= 2)"
    if inputs.restored:
        return (
            f"The forward edits {'this input' if one else 'these inputs'} in place: {names}. This re-run started "
            "from the values an earlier run left (gradsight puts them back after each re-run, so re-runs do not "
            f"compound the edit), so its numbers differ from the first run's for that reason too. {fix}, or "
            f"{spec.fresh}."
        )
    return (
        f"The forward edited {'this input' if one else 'these inputs'} in place: {names}. "
        f"{'It stays' if one else 'They stay'} edited, as after any forward of yours (gradsight copies no batch "
        "before a run), and re-runs start from the edited values, so their numbers differ from this run's. "
        f"{fix}, or {spec.fresh}."
    )


def no_graph(roots: list[torch.Tensor], toggles: Toggles) -> str:
    for kind in ("inference_mode", "no_grad"):
        if getattr(toggles, kind) is True:
            return (
                f"No graph: the whole step ran under torch.{kind}() (this re-run's toggle), so autograd recorded "
                "nothing and no parameter gets a gradient. Turn the toggle off and re-run to get the graph back."
            )
    if torch.is_inference_mode_enabled() or not torch.is_grad_enabled():
        where = "torch.inference_mode()" if torch.is_inference_mode_enabled() else "torch.no_grad()"
        return (
            f"No graph: gradsight.debugger was called inside {where}, so the run it made recorded nothing. "
            f"Call it outside {where.split('(')[0]} (an evaluation loop, a @torch.no_grad function?)."
        )
    if roots and not toggles.empty:  # the first run had a graph: the toggles cut it
        return (
            f"No graph: with this re-run's toggles ({toggles.label}) autograd recorded nothing for the output: "
            "they cut every path from a tensor that requires grad to it (the missing list says where for each "
            "parameter). Turn them off and re-run to get the graph back."
        )
    reasons = [why_no_graph(r, "the output" if len(roots) == 1 else f"output {i}") for i, r in enumerate(roots)]
    return "\n".join(reasons) or "The model returned no tensors."


def roots_of(
    spec: RunSpec, output: Any
) -> tuple[list[torch.Tensor], list[torch.Tensor | None], RootGradient, float | None]:
    if spec.loss is not None:
        value = spec.loss(output)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"loss(output) must return a tensor, not {type(value).__name__}")
        tensors = [value]
    elif spec.grad_output is None and (found := loss_output(output)) is not None:
        tensors = [found]  # the model returned its loss (a `loss` output, or the one scalar): that is the root
    else:
        tensors = [t for t in flatten_tensors(output) if t.requires_grad] or flatten_tensors(output)[:1]
        if not tensors:
            raise TypeError(_no_tensors(spec, output))
    if len(tensors) == 1 and tensors[0].numel() == 1 and spec.grad_output is None:
        t = tensors[0]
        return [t], [None], "scalar", None if t.is_meta else _value_of(t)
    if spec.grad_output is not None:
        given = list(spec.grad_output) if isinstance(spec.grad_output, (list, tuple)) else [spec.grad_output]
        if len(given) != len(tensors):
            gave = "loss(output) gave 1" if spec.loss is not None else f"{spec.what} gave {len(tensors)} output(s)"
            raise ValueError(f"grad_output has {len(given)} tensor(s) but {gave}: give one gradient per output")
        return tensors, given, "grad_output", None
    return tensors, [torch.ones_like(t) for t in tensors], "ones", None


def _value_of(loss: torch.Tensor) -> float:
    """The loss as a Python float, read at its own precision or wider (float64 keeps a finite 1e200; a
    float32 copy made it Inf); a complex loss by its real part, as ``float()`` of it was.

    >>> _value_of(torch.tensor(3.5e199, dtype=torch.float64))
    3.5e+199
    """
    t = loss.detach().reshape(())
    if t.is_complex():
        t = t.real
    return float(t.double()) if t.is_floating_point() or t.dtype == torch.bool else float(t.item())


def _no_tensors(spec: RunSpec, output: Any) -> str:
    got = "None" if output is None else type(output).__name__
    if spec.what == "the model":
        return (
            f"the model returned {got} with no tensors: pass loss=lambda out: ... that returns the tensor to "
            "differentiate"
        )
    hint = " (a def without `return loss`?)" if output is None else ""
    return (
        f"{spec.what} returned {got}, not the tensor to differentiate{hint}: return the loss from it, e.g. "
        "gradsight.debugger(lambda: loss_fn(model(x), y)), or pass loss=lambda out: ... that computes it from "
        "what it returns"
    )


def check_grad_shapes(spec: RunSpec, roots: list[torch.Tensor], grads: list[torch.Tensor | None]) -> None:
    """A ``grad_output`` of the wrong shape, said in the user's terms before torch's "Mismatch in shape"
    from inside the backward (the graph is still shown)."""
    if spec.grad_output is None:
        return
    of = "loss(output)" if spec.loss is not None else f"{spec.what}'s output"
    for k, (root, g) in enumerate(zip(roots, grads, strict=True)):
        if not isinstance(g, torch.Tensor) or g.is_nested or root.is_nested or g.shape == root.shape:
            continue
        which = "" if len(roots) == 1 else f"[{k}]"
        scalar = " (grad_output is the gradient of what loss returns: leave it out for a scalar loss)"
        raise ValueError(
            f"grad_output{which} has shape {tuple(g.shape)} but {of}{which} has shape {tuple(root.shape)}: give "
            f"the gradient of that shape{scalar if spec.loss is not None and root.numel() == 1 else ''}"
        )
