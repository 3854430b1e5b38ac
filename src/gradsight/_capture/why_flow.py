"""Where a gradient became zero or NaN/Inf on its way from the root: one pass per graph
(:class:`Starts`), and the explanations built on it (:func:`zero`, :func:`nonfinite`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..graph import Graph, Node, TensorSummary, Why
from .why_domain import domain_why, masked_hint
from .why_forward import Causes, forward_why, from_root, inputs_finite, unsure
from .why_values import LeafValues, from_leaves

# node id -> the node nearer the root that received a good gradient (non-zero, or finite) and passed
# a zero (or NaN/Inf) one on toward it
Origins = dict[str, "Node | None"]


class Starts:
    """Where zero and NaN/Inf gradients start in one graph, each computed once, when first asked
    (explaining every leaf with a walk each was quadratic)."""

    def __init__(self, graph: Graph, values: Mapping[str, torch.Tensor | None] | None = None) -> None:
        self.graph = graph
        self.values = LeafValues(graph, values)  # leaves holding NaN/Inf (``values``: the leaves' tensors)
        self._zero: Origins | None = None
        self._nonfinite: Origins | None = None
        self._below: set[str] | None = None
        self.causes: Causes = {}  # node id -> the forward's NaN/Inf it passed on (why_forward)
        self.dead = DeadInputs(graph)

    def zero(self) -> Origins:
        if self._zero is None:
            self._zero = zero_origins(self.graph)
        return self._zero

    def nonfinite(self) -> Origins:
        if self._nonfinite is None:
            self._nonfinite = nonfinite_origins(self.graph)
        return self._nonfinite

    def below_a_differentiated_root(self) -> set[str]:
        """The nodes some root that backward ran from reaches (one walk, when first asked)."""
        if self._below is None:
            nodes = {n.id: n for n in self.graph.nodes}
            stack = [r for r in self.graph.roots if nodes[r].executed]
            seen = set(stack)
            while stack:
                for dst, _ in nodes[stack.pop()].next:
                    if dst is not None and dst not in seen:
                        seen.add(dst)
                        stack.append(dst)
            self._below = seen
        return self._below


def starts_of(graph: Graph, values: Mapping[str, torch.Tensor | None] | None = None) -> Starts:
    """The graph's :class:`Starts`, kept while the graph lives: why() asked leaf after leaf walks it
    once (18 ms per NaN answer on a 2k-node graph, each call). The leaves' values are looked at anew
    for each call (a parameter may have been fixed since)."""
    starts = graph._memo.get("starts")
    if not isinstance(starts, Starts):
        starts = graph._memo["starts"] = Starts(graph)
    if not starts.values.same(values):  # other tensors, or one of them edited since (its version moved)
        starts.values = LeafValues(graph, values)
    return starts


def zero_origins(graph: Graph) -> Origins:
    """For every node without a positive gradient norm: where, on the way from the roots, a non-zero
    gradient became zero (None: zero from the root).

    One pass in backward order (each node after every node that feeds it a gradient): a node's
    origin is its first consumer with a non-zero gradient, else the origin of its last consumer that
    has one. Linear in the graph; a walk per leaf was quadratic when most leaves of a deep network
    get zero (vanishing gradients): 0.2 s per 1k-node step, minutes at 10k nodes.
    """
    parents = _consumers(graph)
    origins: Origins = {}
    for n in graph.nodes:
        if n.grad_norm is not None and n.grad_norm > 0:
            continue
        consumers = parents.get(n.id, ())
        found = next((p for p in consumers if p.grad_norm is not None and p.grad_norm > 0), None)
        if found is None:
            found = next((o for p in reversed(consumers) if (o := origins.get(p.id)) is not None), None)
        origins[n.id] = found
    return origins


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    """Node id -> the nodes that send it gradient (whose ``next`` edges point at it)."""
    parents: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for dst, _ in n.next:
            if dst is not None:
                parents.setdefault(dst, []).append(n)
    return parents


def nonfinite_origins(graph: Graph) -> Origins:
    """For every node whose incoming gradient has NaN or Inf: the node whose backward made it so — it
    received a finite gradient and passed NaN/Inf on (None: the root's own gradient is not finite).

    One pass in backward order: a node fed by a non-finite consumer inherits that consumer's origin;
    a node whose consumers all received finite gradients was made non-finite by one of them (the one
    whose recorded gradient out toward it is not finite, when gradients out were kept).
    """
    parents = _consumers(graph)
    nonfinite = {n.id for n in graph.nodes if n.nonfinite_gradient}
    origins: Origins = {}
    for n in graph.nodes:
        if n.id not in nonfinite:
            continue
        consumers = parents.get(n.id, ())
        bad = [p for p in consumers if p.id in nonfinite]
        if bad:
            found = next((o for p in reversed(bad) if (o := origins.get(p.id)) is not None), None)
        else:
            finite = [p for p in consumers if p.grad_norm is not None]
            found = next((p for p in finite if _sends_nonfinite(p, n.id)), finite[0] if finite else None)
        origins[n.id] = found
    return origins


def _sends_nonfinite(p: Node, target: str) -> bool:
    return any(dst == target and g is not None and g.nonfinite for (dst, _), g in zip(p.next, p.grad_out, strict=False))


def nonfinite(name: str, leaf: Node, graph: Graph, origins: Origins | None = None, causes: Causes | None = None,
              values: LeafValues | None = None) -> Why:  # fmt: skip
    """Where, on the way from the root to ``leaf``, the gradient became NaN or Inf. ``values``: the
    graph's leaves' own values, looked at where the saved tensors' statistics do not tell."""
    p = (origins if origins is not None else nonfinite_origins(graph)).get(leaf.id)
    bad = values.bad() if values is not None and values.values else None  # None: no values to look at
    if p is None:
        return from_root(name, leaf, graph, causes, bad)
    upstream = forward_why(name, p, graph, causes)
    if upstream is not None:  # the forward values it saved were NaN/Inf already: it only passed them on
        return upstream
    if bad and inputs_finite(p) is not True:  # no statistics tell, but a leaf of the graph holds NaN/Inf
        return from_leaves(name, bad, p)
    looked = values.values if values is not None else {}
    held = {b.leaf.name for b, _ in bad or () if b.leaf is not None and b.leaf.name}
    edge = domain_why(name, p, graph, looked, held)  # sqrt of a negative, log of 0, acos past ±1: its statistics
    if edge is not None:
        return edge
    loss = graph.run.loss
    if loss is not None and not math.isfinite(loss) and inputs_finite(p) is None:  # no statistics of what it saved
        checked = values is not None and bool(values.values)
        made = " No leaf of the graph holds NaN/Inf now, so an op of the forward made them." if checked else ""
        return Why(name, "nonfinite", f"{name}'s gradient has NaN or Inf: the loss itself is {loss}, so the forward "
                   f"already held NaN/Inf before the backward, and {p.name}{_module(p)} was the first backward to "
                   f"carry them toward {name}.{made} Inspect the nodes below it (click them) to find where they "
                   "first appear.", where=p.id, source=p.source)  # fmt: skip
    return Why(name, "nonfinite", f"{name}'s gradient has NaN or Inf: it became non-finite in {p.name}{_module(p)}, "
               f"which received a finite gradient and passed NaN/Inf on toward {name}. {_nonfinite_hint(p)}"
               f"{masked_hint(p, graph)}{unsure(p, graph)}", where=p.id, source=p.source)  # fmt: skip


def _nonfinite_hint(n: Node) -> str:
    name = n.name
    if name.startswith(("Sqrt", "Rsqrt")):
        return ("The derivative of sqrt is infinite at 0 (add a small epsilon inside: sqrt(x + eps)), and sqrt of a "
                "negative number is NaN (clamp the input first: x.clamp(min=eps).sqrt()).")  # fmt: skip
    if name.startswith(("Log", "Div", "Reciprocal", "Xlogy")) and not name.startswith(("LogSoftmax", "LogSigmoid")):
        return "A division by zero or the log of 0 in its backward: clamp the input away from 0 (x.clamp_min(eps))."
    if name.startswith(("Norm", "LinalgVectorNorm")):
        return "The gradient of a norm is x / ‖x‖, undefined where x is all zeros: add an epsilon."
    if name.startswith("Pow"):
        return "A power with a negative base and a fractional exponent, or 0 to a negative power, in its input."
    if name.startswith(("Acos", "Asin", "Atanh")):
        return ("Its derivative is infinite at ±1, and past ±1 the op itself is NaN: clamp the input to "
                "(-1 + eps, 1 - eps).")  # fmt: skip
    return (
        "Look at what it saved: NaN/Inf already there came from the forward; a finite input where this op's "
        "derivative is infinite or undefined is the other cause."
    )


def zero(name: str, leaf: Node, graph: Graph, origins: Origins | None = None, dead: DeadInputs | None = None,
         values: Mapping[str, torch.Tensor | None] | None = None) -> Why:  # fmt: skip
    """Where, on the way from the root to ``leaf``, the gradient became zero. ``dead``: the graph's
    :class:`DeadInputs`, shared when several leaves are explained at once; ``values``: the leaves'
    tensors by name (a weight that is all zeros zeroes the gradient it multiplies)."""
    p = (origins if origins is not None else zero_origins(graph)).get(leaf.id)
    zeros = _zero_weight(p, graph, values or {}, name) if p is not None and p.name.startswith(PRODUCTS) else None
    if p is not None and zeros is not None:
        return Why(name, "zero", f"{name}'s gradient is zero because {zeros} is all zeros: {p.name}{_module(p)} "
                   f"multiplies the gradient by it on the way to {name}. A zero-initialized layer (ReZero, GPT-style "
                   "or diffusion zero-init) passes no gradient back until its first step moves it off zero; if it "
                   f"was not meant to be zero, initialize {zeros} (nn.init.kaiming_uniform_ / xavier_uniform_).",
                   where=p.id, source=p.source)  # fmt: skip
    if p is not None:
        relu = (dead if dead is not None else DeadInputs(graph)).of(p)
        if relu is not None:
            return Why(name, "zero", f"{name}'s gradient is zero because {relu.name}{_module(relu)} output only "
                       f"zeros: a dead ReLU — every input it saw was ≤ 0. {p.name}{_module(p)} multiplies the gradient "
                       f"by that input to give {name} its gradient, so it is zero too (and the ReLU passes no gradient "
                       "to the layers before it either). Check the initialization (a bias too negative), the learning "
                       "rate, or use LeakyReLU.", where=relu.id, source=relu.source)  # fmt: skip
        return Why(name, "zero", f"{name}'s gradient is zero: it became zero in {p.name}{_module(p)}, which "
                   f"received a non-zero gradient but passed zero on toward {name}. {_zero_hint(p)}",
                   where=p.id, source=p.source)  # fmt: skip
    return Why(name, "zero", f"{name}'s gradient is zero all the way from the root: the loss does not change with it "
               "here (is the loss itself constant?).", where=leaf.id)  # fmt: skip


RELU = ("Relu", "Threshold")
# ops whose gradient toward one input is the gradient times another input: a zero input zeroes it
PRODUCTS = ("Addmm", "Mm", "Bmm", "Baddbmm", "Addbmm", "Mv", "Mul", "Convolution", "Linear", "Matmul", "Dot")
# ops between a ReLU and the layer after it that move values without making zeros of their own
# (a dropout's mask multiply on CPU is a Mul; a pool of all zeros is all zeros)
CARRIERS = ("View", "Reshape", "UnsafeView", "T", "Transpose", "Permute", "Clone", "ToCopy", "NativeDropout",
            "Expand", "Squeeze", "Unsqueeze", "Flatten", "Mul", "Div", "MaxPool", "AvgPool", "AdaptiveAvgPool",
            "AdaptiveMaxPool")  # fmt: skip


class DeadInputs:
    """The dead ReLU whose all-zero output each node multiplied (:func:`dead_input`): found once per
    node, with one index of the graph's nodes."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._nodes: dict[str, Node] | None = None
        self._found: dict[str, Node | None] = {}

    def of(self, p: Node) -> Node | None:
        if not p.name.startswith(PRODUCTS):
            return None
        if p.id not in self._found:
            if self._nodes is None:
                self._nodes = {n.id: n for n in self.graph.nodes}
            self._found[p.id] = dead_input(p, self._nodes)
        return self._found[p.id]


def dead_input(p: Node, nodes: dict[str, Node]) -> Node | None:
    """The ReLU below ``p`` (a product: matmul, conv, mul) whose output was all zero — its saved result
    has norm 0, or it received a gradient and passed none on — when ``p`` zeroed a gradient: the
    layer after a dead ReLU gets a zero weight gradient, and the cause is the ReLU, not the layer.
    ``nodes``: the graph's nodes by id."""
    stack = [(nodes[d], 0) for d, _ in p.next if d is not None and d in nodes]
    while stack:
        node, hops = stack.pop()
        if node.name.startswith(RELU) and _all_zero(node, nodes):
            return node
        if hops < 3 and node.name.startswith(CARRIERS) and node.leaf is None:
            stack += [(nodes[d], hops + 1) for d, _ in node.next if d is not None and d in nodes]
    return None


def _all_zero(relu: Node, nodes: dict[str, Node]) -> bool:
    result = relu.saved.get("_saved_result")
    if isinstance(result, TensorSummary) and result.norm is not None:
        return result.norm == 0.0
    below = [nodes[d] for d, _ in relu.next if d is not None and d in nodes]
    received = relu.grad_norm is not None and relu.grad_norm > 0
    return received and bool(below) and all(n.grad_norm == 0.0 for n in below)


def _zero_weight(p: Node, graph: Graph, values: Mapping[str, torch.Tensor | None], name: str) -> str | None:
    """The name of a leaf ``p`` multiplies by (through a transpose or view) whose values are all zero."""
    nodes = {n.id: n for n in graph.nodes}
    stack = [(nodes[d], 0) for d, _ in p.next if d is not None and d in nodes]
    while stack:
        node, hops = stack.pop()
        if node.leaf is not None:
            t = values.get(node.leaf.name or "")
            if node.leaf.name and node.leaf.name != name and t is not None and t.numel() and not bool(t.any()):
                return node.leaf.name
        elif hops < 2 and node.name.startswith(CARRIERS):
            stack += [(nodes[d], hops + 1) for d, _ in node.next if d is not None and d in nodes]
    return None


def _module(n: Node) -> str:
    return f" (in {n.module})" if n.module else ""


def _bound_hint(n: Node) -> str | None:
    """A Hardtanh (ReLU6, Hardtanh) whose every input was past one of its bounds, in words."""
    lo, hi, x = n.saved.get("_saved_min_val"), n.saved.get("_saved_max_val"), n.saved.get("_saved_self")
    if not isinstance(x, TensorSummary) or x.min is None or x.max is None:
        return None
    if isinstance(hi, (int, float)) and x.min >= hi:
        side, value, fix = "upper", hi, "too positive"
    elif isinstance(lo, (int, float)) and x.max <= lo:
        side, value, fix = "lower", lo, "too negative"
    else:
        return None
    return (f"It is saturated at its {side} bound: every input it saw was {'≥' if side == 'upper' else '≤'} {value:g} "
            f"(they ranged {x.min:.4g} to {x.max:.4g}), where its output is constant and passes no gradient: "
            f"check what feeds it (a bias or scale {fix}, unnormalized inputs).")  # fmt: skip


def _zero_hint(n: Node) -> str:
    name = n.name
    if name.startswith("Hardtanh"):
        bound = _bound_hint(n)
        if bound is not None:
            return bound
        return ("Every input it saw was outside its bounds (ReLU6: ≤ 0 or ≥ 6; Hardtanh: ≤ -1 or ≥ 1), where its "
                "output is constant and passes no gradient: check what feeds it.")  # fmt: skip
    if name.startswith(("Relu", "Threshold")):
        return (
            "A dead ReLU: every input it saw was ≤ 0, so no gradient passes (check the initialization, "
            "the learning rate, or use LeakyReLU)."
        )
    if name.startswith(("Mul", "Where", "MaskedFill", "MaskedScatter")):
        return "A multiplication by zero or a mask that is all zero on this path."
    if name.startswith("Clamp"):
        return "Every value was outside the clamp range, where the gradient is zero."
    if name.startswith(("Round", "Floor", "Ceil", "Sign")):
        return "This op is piecewise constant: its gradient is zero everywhere."
    return "Look at what it saved: the derivative of this op is zero at these inputs."
