"""NaN/Inf that came out of the forward. The node whose backward first passed NaN/Inf toward a leaf
(:func:`why_flow.nonfinite_origins`) is where the *gradient* turned bad; when the forward values it
saved are already NaN/Inf, its backward only carried them on, and the cause is upstream: the first
node, in forward order, whose saved inputs hold NaN/Inf (:func:`forward_cause`), and there the input
that brought them — the output of an op whose own inputs were finite (an overflow, a 0/0), a
parameter that is already NaN/Inf, or a tensor from outside the graph (the batch, or something
computed from it without grad).

Only what the capture recorded is used: the statistics of saved tensors (taken at once in small
captures) and the shapes of each node's outputs, which tell which input a saved tensor is. Where
statistics were not taken, the answer says what is known instead of guessing.

    >>> from gradsight.graph import TensorSummary
    >>> bad = TensorSummary((2,), "float32", "cpu", 2, nan_count=2, inf_count=0)
    >>> finite_values(bad), finite_values(TensorSummary((2,), "float32", "cpu", 2, norm=1.0))
    (False, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

from ..graph import Graph, Node, SavedValue, TensorSummary, Why
from .why_domain import discarded, forward_hint, masked_note, overflow_edge
from .why_values import counted, from_leaves, in_module

PASS_HOPS = 4  # pass-through nodes (views, transposes, casts: nothing saved) followed below an input


def finite_values(s: TensorSummary) -> bool | None:
    """Whether every value of the summarized tensor is finite; None when no statistic says (a
    summary of shape only). A finite norm means finite values: norms are rescaled, never overflow."""
    if s.nonfinite:
        return False
    if s.nan_count is not None or s.norm is not None:
        return True
    return None


def _tensors(value: SavedValue) -> Iterator[TensorSummary]:
    if isinstance(value, TensorSummary):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _tensors(v)


def saved_tensors(node: Node, results: bool) -> list[tuple[str, TensorSummary]]:
    """The tensors ``node`` saved from its forward: its inputs (``results=False``) or its own outputs
    (``_saved_result``, ``_saved_result1``: what softmax, exp, layer_norm keep)."""
    return [(key.removeprefix("_saved_"), s) for key, value in node.saved.items()
            if ("result" in key) == results for s in _tensors(value)]  # fmt: skip


def inputs_finite(node: Node) -> bool | None:
    """False when a saved input holds NaN/Inf; True when it saved inputs and all are known finite."""
    known = [finite_values(s) for _, s in saved_tensors(node, results=False)]
    if False in known:
        return False
    return True if known and None not in known else None


# Ops that save only their result and cannot make NaN/Inf from finite inputs: a NaN/Inf in their
# output was in their input, so the search goes on below them.
BOUNDED = ("Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Hardtanh", "Hardsigmoid", "Threshold", "Elu")


def received(node: Node) -> list[tuple[str, TensorSummary]]:
    """What ``node`` saved that shows NaN/Inf reached it in the forward: its saved inputs that hold
    them, or, for an op that saves only its result and cannot make them (:data:`BOUNDED`), its result."""
    bad = [(k, s) for k, s in saved_tensors(node, results=False) if finite_values(s) is False]
    if bad or saved_tensors(node, results=False) or not node.name.startswith(BOUNDED):
        return bad
    return [(k, s) for k, s in saved_tensors(node, results=True) if finite_values(s) is False]


@dataclass(frozen=True)
class ForwardCause:
    """Where NaN/Inf came out of the forward. ``first``: the first node (forward order) whose saved
    inputs hold them, ``bad``: which one (its name and summary). Below it, at most one of ``leaf``
    (a leaf whose values are NaN/Inf) and ``maker`` (the op whose output first holds them:
    ``certain`` when its inputs are all known finite; else ``suspects`` are the inputs it did not
    save, which may hold them); ``outside``: no input of ``first`` in the graph matches, and it
    takes inputs from outside the graph."""

    first: Node
    bad: tuple[str, TensorSummary]
    maker: Node | None = None
    leaf: Node | None = None
    certain: bool = False
    suspects: tuple[Node, ...] = ()
    outside: bool = False
    overflow: bool = False  # ``maker`` is an exp whose result overflowed (:func:`overflowed`)


# Ops that save only their result and make Inf of finite inputs: exp past 88.7 (float32) overflows.
OVERFLOWS = ("ExpBackward", "Exp2Backward", "Expm1Backward")


def overflowed(node: Node) -> TensorSummary | None:
    """The result of an exp (:data:`OVERFLOWS`) that holds Inf and no NaN: it overflowed (an exp of a
    NaN is NaN; an Inf input is what a finite one past 88.7 also gives, the likelier)."""
    if node.name.rstrip("0123456789") not in OVERFLOWS or saved_tensors(node, results=False):
        return None
    return next((s for _, s in saved_tensors(node, results=True) if s.inf_count and not s.nan_count), None)


Causes = dict[str, "ForwardCause | None"]  # node id -> forward_cause of it


def forward_cause(graph: Graph, p: Node) -> ForwardCause | None:
    """The cause in the forward of the NaN/Inf that ``p``'s backward passed on, when what ``p`` saved
    shows it received them (:func:`received`; None otherwise: its backward made them, or nothing tells)."""
    if not received(p) and overflowed(p) is None:
        return None
    nodes = graph.by_id
    upstream = _reachable(p, nodes)
    first = next(n for n in reversed(graph.nodes) if n.id in upstream and (received(n) or overflowed(n)))
    made = overflowed(first)
    if not received(first) and made is not None:
        return ForwardCause(first, ("result", made), maker=first, overflow=True)
    bad = received(first)[0]
    below = _matching(first, nodes)
    if len(below) != 1:
        return ForwardCause(first, bad, outside=not below and any(dst is None for dst, _ in first.next))
    return _descend(ForwardCause(first, bad), below[0], nodes)


def _reachable(p: Node, nodes: Mapping[str, Node]) -> set[str]:
    """``p`` and every node it reaches through ``next``: the ops and leaves its forward inputs came from."""
    seen, stack = {p.id}, [p]
    while stack:
        for dst, _ in stack.pop().next:
            if dst is not None and dst not in seen and dst in nodes:
                seen.add(dst)
                stack.append(nodes[dst])
    return seen


def _output_shape(node: Node, nr: int) -> tuple[int, ...] | None:
    if node.leaf is not None:
        return node.leaf.shape
    return node.outputs[nr].shape if nr < len(node.outputs) else None


def _matching(node: Node, nodes: Mapping[str, Node], finite: bool = False) -> list[Node]:
    """The inputs of ``node`` (nodes of the graph) whose output has the shape of one of its saved
    inputs holding NaN/Inf (``finite``: of one known finite)."""
    shapes = ({s.shape for _, s in saved_tensors(node, results=False) if finite_values(s) is True} if finite
              else {s.shape for _, s in received(node)})  # fmt: skip
    out: list[Node] = []
    for dst, nr in node.next:
        child = nodes.get(dst) if dst is not None else None
        if child is not None and all(c.id != child.id for c in out) and _output_shape(child, nr) in shapes:
            out.append(child)
    return out


def _descend(cause: ForwardCause, node: Node, nodes: Mapping[str, Node]) -> ForwardCause:
    """From ``node``, whose output holds the NaN/Inf, down to where they come from: a leaf; an op
    whose saved inputs are finite or whose saved result shows them (the maker); through ops that
    save no input (a transpose, a view, a ReLU) to the one node below them. A cast
    (``ToCopyBackward0``) is the maker of an Inf that is no NaN: a cast to float16 overflows.
    ``cause`` unchanged when nothing tells (statistics not taken, several inputs)."""
    bad = cause.bad[1]
    for _ in range(PASS_HOPS + 1):
        if node.leaf is not None:
            return replace(cause, leaf=node)
        known = inputs_finite(node)
        if known is False:  # it received them too: follow the input that brought them
            below = _matching(node, nodes)
            if len(below) != 1:
                return cause
            node = below[0]
            continue
        if (node.name.startswith("ToCopy") and bad.inf_count and not bad.nan_count) or known is True:
            seen = {c.id for c in _matching(node, nodes, finite=True)}
            ids = [d for d, _ in node.next if d is not None and d in nodes and d not in seen]
            unseen = tuple(_below(nodes[d], nodes) for d in ids)
            return replace(cause, maker=node, certain=known is True and not unseen, suspects=unseen)
        if saved_tensors(node, results=False):
            return cause  # inputs saved without statistics: cannot tell
        children = [nodes[d] for d, _ in node.next if d is not None and d in nodes]
        made = any(finite_values(s) is False for _, s in saved_tensors(node, results=True))
        if made and not node.name.startswith(BOUNDED):
            return replace(cause, maker=node)
        if len(children) != 1 or len(children) != len(node.next):
            return cause
        node = children[0]
    return cause


def _below(node: Node, nodes: Mapping[str, Node]) -> Node:
    """The node under a chain of pass-through ops (a transpose of a weight: the weight)."""
    for _ in range(PASS_HOPS):
        if node.leaf is not None or saved_tensors(node, results=False) or len(node.next) != 1:
            break
        dst = node.next[0][0]
        if dst is None or dst not in nodes:
            break
        node = nodes[dst]
    return node


def counts(s: TensorSummary) -> str:
    """How many NaN / Inf a summary holds, in words ("8 NaN", "406 Inf", "NaN or Inf")."""
    said = counted(s.nan_count, s.inf_count)
    if said:
        return said
    return "NaN" if s.norm is not None and math.isnan(s.norm) else "NaN or Inf"


def overflow_hint(s: TensorSummary) -> str:
    """What makes the NaN/Inf of ``s`` in a forward, from its dtype and what it holds."""
    if s.inf_count and s.dtype in ("float16", "bfloat16"):
        top = "65504" if s.dtype == "float16" else "3.4e38"
        return (f"{s.dtype} holds values up to {top} only, so an output past that overflows to Inf (autocast "
                "runs matmuls in it): keep this layer in float32 (torch.autocast(..., enabled=False) around it), "
                "scale its inputs or weights down, or use bfloat16.")  # fmt: skip
    if s.inf_count:
        return ("An Inf in a forward is an overflow (float32 tops at 3.4e38: exp of a large value, a product of "
                "huge activations) or a division by zero: look at its inputs' range.")  # fmt: skip
    return ("A NaN in a forward comes from 0/0, Inf − Inf, 0 × Inf, or sqrt / log of a negative number: look at "
            "its inputs' range (a division by a zero std or norm, a log of 0).")  # fmt: skip


def forward_why(name: str, p: Node, graph: Graph, causes: Causes | None = None) -> Why | None:
    """Why ``name``'s gradient is NaN/Inf when ``p``, whose backward passed them on, received them
    from the forward (:func:`forward_cause`); None when its saved inputs do not show that. ``causes``:
    the causes found so far in this graph (one walk per node ``p``, not one per leaf)."""
    causes = causes if causes is not None else {}
    if p.id not in causes:
        causes[p.id] = forward_cause(graph, p)
    cause = causes[p.id]
    if cause is None:
        return None
    first, (key, bad) = cause.first, cause.bad
    head = (f"{name}'s gradient has NaN or Inf because the forward values already did: {in_module(first)} saved its "
            f"{key} with {counts(bad)}")  # fmt: skip
    head += (", and every backward from there on passes them on" if first is p else
             f" (the backward of {in_module(p)} was the first to carry them into the gradient)")  # fmt: skip
    if cause.leaf is not None and cause.leaf.leaf is not None:
        leaf = cause.leaf.leaf.name or "a leaf"
        text = (f"{head}. They come from {leaf}, whose values are already NaN/Inf: a parameter that a too-large "
                f"step made diverge (lower the learning rate, clip gradients) or one initialized badly; look at "
                f"{leaf}'s values.")  # fmt: skip
        return Why(name, "nonfinite", text, where=cause.leaf.id)
    if key in ("running_mean", "running_var") and cause.maker is None and cause.leaf is None:
        buffer = f"{first.module}.{key}" if first.module else f"the {key} buffer"
        text = (f"{head}. They come from {buffer}, a running statistic of the normalization layer (a buffer, not a "
                "parameter), which already holds NaN/Inf: in eval mode the layer normalizes with it. A training "
                "forward that saw NaN/Inf put it there: reset it (reset_running_stats() on the layer) or reload it "
                "from a checkpoint, and find that step.")  # fmt: skip
        return Why(name, "nonfinite", text, where=first.id, source=first.source)
    if cause.overflow and cause.maker is not None:
        return _overflow(name, cause.maker, p, bad, graph)
    if cause.maker is not None:
        m = cause.maker
        if m.name.startswith("ToCopy"):
            made = (f"They first appear where {in_module(m)} casts its input to {bad.dtype}: the cast overflowed (or "
                    "its input already held Inf).")  # fmt: skip
        elif cause.certain:
            made = (
                f"They first appear in the output of {in_module(m)}: its inputs are finite, so its forward made them."
            )
        elif cause.suspects:
            made = f"They first appear in the output of {in_module(m)}. " + _suspected(cause.suspects)
        else:
            made = (f"They first appear in the output of {in_module(m)} (its inputs were not saved, so whether they "
                    "held NaN/Inf already is not known).")  # fmt: skip
        if _divides_by_zero(m):
            made = f"They first appear in the output of {in_module(m)}: its divisor is 0 (x / 0 is Inf, 0 / 0 is NaN)."
        # sqrt of a negative, log of 0: what its domain says (a divisor of zeros is said above)
        hint = (None if _divides_by_zero(m) else forward_hint(m, p, graph)) or overflow_hint(bad)
        return Why(name, "nonfinite", f"{head}. {made} {hint}", where=m.id, source=m.source)
    if cause.outside:
        text = (f"{head}. No input of {first.name} in the graph matches that value: it comes from a tensor outside "
                "the graph (one that does not require grad: the batch, or something computed from it without "
                f"grad, such as a normalization by its std). Look there. {overflow_hint(bad)}")  # fmt: skip
        return Why(name, "nonfinite", text, where=first.id, source=first.source)
    text = (f"{head}. gradsight cannot tell which of {first.name}'s inputs brought them (their values were not "
            f"summarized): inspect the nodes that feed it. {overflow_hint(bad)}")  # fmt: skip
    return Why(name, "nonfinite", text, where=first.id, source=first.source)


def _suspected(suspects: tuple[Node, ...]) -> str:
    """What may hold the NaN/Inf an op's output first shows: its unsaved inputs, parameters (leaves) and
    outputs of other ops told apart."""
    leaves = [n.leaf.name or n.name for n in suspects if n.leaf is not None]
    ops = [n.name for n in suspects if n.leaf is None]
    parts = [f"the parameter{'s' if len(leaves) > 1 else ''} {' or '.join(leaves)}"] if leaves else []
    parts += [f"the output of {' or '.join(ops)}"] if ops else []
    which = "one of them" if len(suspects) > 1 else "it"
    diverged = " (a parameter that a too-large step made diverge: look at its values)" if leaves else ""
    return (
        f"The inputs it saved are finite, but it did not save {' or '.join(parts)}: either {which} already "
        f"held NaN/Inf{diverged}, or this op's forward made them."
    )


def _divides_by_zero(m: Node) -> bool:
    """A division whose saved divisor is all zeros."""
    other = m.saved.get("_saved_other")
    return m.name.startswith("Div") and isinstance(other, TensorSummary) and other.norm == 0.0


def _overflow(name: str, m: Node, p: Node, bad: TensorSummary, graph: Graph) -> Why:
    """Why ``name``'s gradient is NaN/Inf when the exp ``m`` overflowed in the forward; where a
    ``torch.where`` discarded the Inf, 0 × ∞ in the backward is NaN all the same."""
    top = {"float16": "11.1", "bfloat16": "88.7"}.get(bad.dtype, "88.7" if bad.dtype == "float32" else "709.8")
    carried = "" if m is p else f" (the backward of {in_module(p)} was the first to carry them into the gradient)"
    text = (f"{name}'s gradient has NaN or Inf because the forward's values did: {in_module(m)} overflowed — its "
            f"output holds {counts(bad)} and no NaN, as exp gives for any {bad.dtype} input above {top} — and every "
            f"backward from there on passes them on{carried}. Keep exp's input in range: compute in log space "
            "(torch.logsumexp for log(sum(exp(x))), F.softplus for log(1 + exp(x)), F.log_softmax for "
            "log(softmax(x))), subtract the maximum first, or clamp the input (x.clamp(max=80)).")  # fmt: skip
    by = discarded(m, graph)
    if by is not None:
        text += masked_note(overflow_edge(m), by)
    return Why(name, "nonfinite", text, where=m.id, source=m.source)


def unsure(p: Node, graph: Graph) -> str:
    """What is known of the forward values reaching ``p`` when its saved inputs have no statistics: a
    loss that is not finite shows that they were already NaN/Inf. "" when they are known finite."""
    if inputs_finite(p) is not None:
        return ""
    loss = graph.run.loss
    if loss is not None and not math.isfinite(loss):
        return (
            f" The loss itself is {loss}, so the forward already held NaN/Inf before the backward: {p.name} "
            "likely only passed it on; inspect the nodes below it (click them) to find where it first appears."
        )
    if not saved_tensors(p, results=False):
        return ""
    return (
        f" gradsight did not take statistics of the values {p.name} saved, so it cannot tell whether NaN/Inf "
        "was already in the forward: inspect it (click it) to see."
    )


def from_root(name: str, leaf: Node, graph: Graph, causes: Causes | None = None,
              bad: list[tuple[Node, str]] | None = None) -> Why:  # fmt: skip
    """Why ``name``'s gradient is NaN/Inf when the gradient backward started from already was: the
    forward made the root's value NaN/Inf (found as for any node, :func:`forward_why`), or the gradient
    it was given is. ``bad``: leaves of the graph whose own values hold NaN/Inf (why_values; None: not
    looked at)."""
    root = next((n for n in graph.nodes if n.id in graph.roots and n.nonfinite_gradient), None)
    if root is None:
        return Why(name, "nonfinite", f"{name}'s gradient has NaN or Inf from the root on.", where=leaf.id)
    upstream = forward_why(name, root, graph, causes)
    if upstream is not None:
        return upstream
    if bad and graph.run.root_gradient != "grad_output":
        return from_leaves(name, bad, None)
    head = f"{name}'s gradient has NaN or Inf from the root on: the gradient backward started from in {root.name}"
    if graph.run.mode == "live":
        check = ("no parameter of the graph holds NaN/Inf now: the loss made them from the output — a log of 0, a "
                 "division by zero — or the batch held them") if bad is not None else (
                 "after a diverged step, check the parameters: "
                 "all(p.isfinite().all() for p in model.parameters())")  # fmt: skip
        text = (f"{head}, what the model's output got from the loss computed after it, already holds NaN/Inf: the "
                f"output or the loss was NaN/Inf in the forward ({check}). Live steps keep no statistics of saved "
                "values until a node is clicked: click the nodes from the output down to find where NaN/Inf first "
                "appear.")  # fmt: skip
        return Why(name, "nonfinite", text, where=root.id, source=root.source)
    if graph.run.root_gradient == "grad_output":
        text = f"{head} is not finite: check the grad_output you gave."
    else:
        text = (f"{head} is not finite (a NaN loss gives a NaN gradient as soon as an op uses it): check the loss "
                "value.")  # fmt: skip
    return Why(name, "nonfinite", text + unsure(root, graph), where=root.id, source=root.source)
