"""What ``why()`` says of the break a taint trace found (taint.py): the wording of each kind of cut
(detach, ``.data``, no_grad, a conversion to Python numbers, a what-if toggle, a reentrant checkpoint
whose inputs do not require grad), and of a leaf whose values reach the loss only through a gradient
that does not depend on them (taint_grads.py).
"""

from __future__ import annotations

from typing import Protocol

from ..graph import Why
from . import taint_numbers as _numbers


class Toggle(Protocol):
    """A what-if toggle that cut the path (``taint._Toggled``)."""

    @property
    def kind(self) -> str: ...
    @property
    def module(self) -> str: ...


class Found(Protocol):
    """A break of a taint trace (``taint._Break``), as the wording reads it."""

    @property
    def reason(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def source(self) -> str | None: ...
    @property
    def in_checkpoint(self) -> bool: ...
    @property
    def toggled(self) -> Toggle | None: ...
    @property
    def after(self) -> Found | None: ...


TOGGLED = (
    "{name}'s path to the loss goes through {op} inside {module}, which this re-run's {kind} toggle runs under "
    "torch.{kind}(): autograd recorded nothing there. That is gradsight's what-if, not your code: turn the "
    "toggle off to get the gradient back."
)

TOGGLED_DETACH = (
    "{name}'s path to the loss goes through {module}, whose output this re-run's detach toggle detaches: "
    "nothing flows back through it. That is gradsight's what-if, not your code: turn the toggle off to get "
    "the gradient back."
)

TOGGLED_VARIABLE = (
    "{name}'s path to the loss goes through {variable}, which this re-run's detach toggle detaches right where "
    "the cell assigns it: nothing flows back through it. That is gradsight's what-if, not your code: re-run "
    "without detach=['{variable}'] to get the gradient back."
)

TO_PYTHON = (
    "{name}'s path to the loss is cut by {op}: it turns a tensor into a Python number (or a list or NumPy "
    "array of them), which has no graph, so the tensor made from it again (torch.tensor(...)) starts a new "
    "graph with nothing behind it and no gradient flows back to {name}. Keep the value a tensor: use it "
    "directly instead of {op} (and .detach() only where you mean to stop the gradient)."
)

LEFT_TORCH = (
    "{name} is used in the forward, but nothing gradsight could follow from it reaches the loss. Its values "
    "leave autograd at {op}, which turns a tensor into a Python number (or a list or NumPy array): if the loss "
    "uses a tensor made from that number (torch.tensor(...) after plain Python arithmetic), that is the cut — "
    "a number has no graph. Keep the value a tensor to get a gradient."
)

CHECKPOINT = (
    "{name}'s path to the loss goes through torch.utils.checkpoint with use_reentrant=True, which runs its "
    "function under torch.no_grad() and rebuilds the graph during backward only when one of the function's "
    "inputs requires grad. None does here, so its output has no graph and {name} gets no gradient. Pass "
    "use_reentrant=False (PyTorch's recommendation), or make an input require grad (x.requires_grad_())."
)

BREAK = {
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

# Why a break stopped the values, in a few words: the cut before a conversion (`.detach().numpy()`).
_CUT = {"detach": "{op}()", "data": ".data", "no_grad": "{op} under torch.no_grad()",
        "inference_mode": "{op} under torch.inference_mode()",
        "non_differentiable": "{op} (not differentiable)"}  # fmt: skip

LEFT_AFTER = (
    "{name}'s values lose requires_grad at {cut}{where} and then leave torch at {op}, which hands them to "
    "Python (a number, a list or a NumPy array), and the loss uses a tensor made from such values again "
    "(torch.from_numpy or torch.tensor after NumPy or Python arithmetic, which gradsight cannot follow, so it "
    "takes that tensor to be made from them): that round trip is the cut, an array has no graph and nothing "
    "flows back to {name}. Keep the values a tensor (torch ops instead of NumPy) to get a gradient."
)

GRAD_DROPS = (
    "What is computed from {name} is used by the loss only through a gradient taken of it (torch.autograd.grad "
    "with create_graph=True, at the line shown), and that gradient does not depend on {name}: {name} drops out "
    "when differentiating (a bias added last, or any additive term, has a constant derivative). So the loss "
    "does not depend on {name}, and it gets no gradient (torch.autograd.grad(loss, {name}, allow_unused=True) "
    "is None too). That is expected of a loss made only of such a gradient (a gradient penalty alone never "
    "trains the output layer's bias); if {name} should train, add a term to the loss that uses it directly."
)


MAYBE_ALSO = (
    " Its values also leave torch at {op}{where}, and the loss uses a tensor made from an array or Python numbers "
    "later, which gradsight cannot follow back: if that tensor is made from them, that round trip cuts the path too."
)


def worded(name: str, found: Found, guessed: bool, also: Found | None = None) -> Why:
    """Why ``name`` got no gradient, said of ``found``, the first certain break on its path to the loss
    (``guessed``: the trace took a tensor made of Python numbers or an array to come from it, and found no
    other). ``also``: that guessed conversion, when it is on the path too: said as a possibility only."""
    toggled, source = found.toggled, found.source
    if toggled is not None and toggled.kind == "variable_detach":
        text, source = TOGGLED_VARIABLE.format(name=name, variable=toggled.module), None
    elif toggled is not None and toggled.kind == "module_detach":
        text = TOGGLED_DETACH.format(name=name, module=toggled.module)
    elif toggled is not None and found.reason in ("no_grad", "inference_mode"):
        text = TOGGLED.format(name=name, op=found.op, module=toggled.module, kind=found.reason)
    elif found.in_checkpoint and found.reason == "no_grad":
        text = CHECKPOINT.format(name=name)
    elif found.reason == "not_on_path" and found.op == "grad":
        text = GRAD_DROPS.format(name=name)
    elif guessed and found.after is not None:  # cut first (.detach().numpy()), then made a tensor again
        cut = _CUT.get(found.after.reason, "{op}").format(op=found.after.op)
        where = f" ({found.after.source})" if found.after.source and found.after.source != source else ""
        op = _numbers.SPELLING.get(found.op, found.op)
        return Why(name, found.after.reason, LEFT_AFTER.format(name=name, cut=cut, where=where, op=op),  # type: ignore[arg-type]
                   source=source)  # fmt: skip
    elif guessed:  # a tensor made of Python numbers after the conversion: likely, not sure
        return Why(name, "not_on_path", LEFT_TORCH.format(name=name, op=_numbers.SPELLING[found.op]), source=source)
    elif found.op in _numbers.CONVERSIONS:
        text = TO_PYTHON.format(name=name, op=_numbers.SPELLING[found.op])
    else:
        text = BREAK[found.reason].format(name=name, op=found.op)
    if also is not None:
        where = f" ({also.source})" if also.source else ""
        text += MAYBE_ALSO.format(op=_numbers.SPELLING.get(also.op, also.op), where=where)
    return Why(name, found.reason, text, source=source)  # type: ignore[arg-type]
