"""Finite gradients that are too big or too small to train with: why() of a leaf whose gradient is
exploding or vanishing says where, on its way from the loss, the gradient grows or shrinks most.

Gradients are compared per element (RMS = norm / √numel): a sum over a batch or a broadcast changes
a norm without changing what each weight receives. The path is the one that brings the leaf most of
its gradient: from the leaf up, the consumer that passed it the largest one, to a root.

Thresholds, chosen so that ordinary models (tests/zoo.py; a bias before a BatchNorm, whose gradient
cancels to rounding noise) are not flagged:

- exploding: the leaf's gradient RMS is at least :data:`EXPLODING` (1e3) and at least
  :data:`EXPLODING` times the root's (the loss's gradient is 1): a weight moved by lr × 1000 per
  element diverges at any usual learning rate, which is why clipping to a norm of ~1 is common.
- vanishing: the leaf's gradient RMS is at most :data:`VANISHING` (1e-6) times the largest on its
  path, *and* so is the gradient that reached its layer (the node that handed it its gradient):
  six orders of magnitude below the rest of the network, a step changes nothing a float32 weight
  can hold. A gradient that only cancels in the layer's own sum over the batch (a bias before a
  normalization) is no vanishing gradient.

    >>> from gradsight.graph import Graph, LeafInfo, Node, TensorSummary
    >>> g = lambda norm: (TensorSummary((1,), "float32", "cpu", 1, norm=norm),)
    >>> root = Node("r", "MulBackward0", "root", next=(("leaf:w", 0),), grad_in=g(1.0), grad_norm=1.0)
    >>> leaf = Node("leaf:w", "AccumulateGrad", "leaf", grad_in=g(1e4), grad_norm=1e4, leaf=LeafInfo("w", (1,), True))
    >>> # loss = w * 1e4: ×10,000 in one step from the loss
    >>> extreme("w", leaf, Graph(nodes=(root, leaf), roots=("r",))).message.split(":")[0]
    "w's gradient is exploding"
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise

import torch

from ..graph import Graph, Node, TensorSummary, Why
from .why_values import in_module

EXPLODING = 1e3
VANISHING = 1e-6
SATURATING = ("Sigmoid", "Tanh", "Hardsigmoid", "Hardtanh", "Softsign")


def numel(n: Node) -> int:
    """How many values the gradient into ``n`` has."""
    return sum(g.numel for g in n.grad_in if g is not None)


def rms(n: Node) -> float | None:
    """The root mean square of the gradient into ``n`` (its norm over √ its elements)."""
    if n.grad_norm is None or not math.isfinite(n.grad_norm) or numel(n) <= 0:
        return None
    return n.grad_norm / math.sqrt(numel(n))


@dataclass(frozen=True)
class Step:
    """One node of the path and what its backward did to the gradient's RMS (``factor``: below / above)."""

    node: Node
    factor: float


def path_up(leaf: Node, graph: Graph) -> list[Node]:
    """From ``leaf`` up to a root, through the consumer that passed the largest gradient each time
    (nodes without a finite RMS are skipped)."""
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for dst, _ in n.next:
            if dst is not None:
                consumers.setdefault(dst, []).append(n)
    path, seen = [leaf], {leaf.id}
    while True:
        ups = [p for p in consumers.get(path[-1].id, ()) if p.id not in seen and rms(p) is not None]
        if not ups:
            return path
        up = max(ups, key=lambda p: p.grad_norm or 0.0)
        path.append(up)
        seen.add(up.id)


def _steps(path: list[Node], grow: bool = False) -> list[Step]:
    """What each node's backward did along ``path`` (leaf first): the RMS it passed down over the RMS it
    got. Not the backward of nodes that got one value (a mean over N values divides each by N: no
    gradient shrinks there), unless there are no others or the gradient grows (``grow``)."""
    out = []
    for below, above in pairwise(path):
        b, a = rms(below), rms(above)
        if b is not None and a is not None and a > 0 and b > 0:
            out.append(Step(above, b / a))
    if grow:  # a scalar multiply of the loss (1e7 * mse) grows every gradient: one-value nodes count
        return out
    return [s for s in out if numel(s.node) > 1] or out


def extreme(name: str, leaf: Node, graph: Graph, values: Mapping[str, torch.Tensor | None] | None = None) -> Why | None:
    """Why ``name``'s finite gradient is exploding or vanishing (the thresholds of this module), or None.
    ``values``: the leaves' tensors by name, to tell a small learned scale (LayerScale) by its values."""
    own = rms(leaf)
    if own is None or own == 0.0 or leaf.nonfinite_gradient:
        return None
    path = path_up(leaf, graph)
    top = rms(path[-1])
    if len(path) < 2 or top is None:
        return None
    steps = _steps(path)
    if not steps:
        return None
    if own >= EXPLODING and own >= EXPLODING * top:
        return _exploding(name, leaf, own, own / top, path[-1], _steps(path, grow=True), graph)
    wide = [r for n in path[1:] if (r := rms(n)) is not None and numel(n) > 1]  # not the loss's own
    peak = max(wide or [top])
    arrival = next((rms(n) for n in path[1:] if not _same(n, leaf)), None)
    if own <= VANISHING * peak and arrival is not None and arrival <= VANISHING * peak:
        at = next(n for n in path[1:] if rms(n) == peak)
        return _small_by_design(name, leaf, own, steps, graph, values or {}) or _vanishing(
            name, leaf, own, own / peak, at, steps)  # fmt: skip
    return None


def _small_by_design(name: str, leaf: Node, own: float, steps: list[Step], graph: Graph,
                     values: Mapping[str, torch.Tensor | None]) -> Why | None:  # fmt: skip
    """A small gradient that one node makes small, not depth: a multiply by a learned scale whose
    values are small (LayerScale's gamma, 1e-6 at init, grows as it trains: not flagged), or one node
    that cancels the gradient (what follows it is nearly constant in its input: softmax(x).sum())."""
    worst = min(steps, key=lambda s: s.factor)
    if worst.factor > math.sqrt(VANISHING):  # spread over many nodes: depth, saturation
        return None
    node, start = worst.node, f"{name}'s gradient is small (norm {leaf.grad_norm:.3g}, RMS {own:.3g} per value)"
    nodes = graph.by_id
    if node.name.startswith(("Mul", "Div")):
        for dst, _ in node.next:
            scale = nodes.get(dst) if dst is not None else None
            if scale is None or scale.leaf is None or not scale.leaf.name or scale.leaf.name == name:
                continue
            t = values.get(scale.leaf.name)
            top = float(t.detach().abs().max()) if t is not None and t.numel() and t.is_floating_point() else None
            if top is not None and top <= 1e-3:
                text = (f"{start}, and it is made so in {in_module(node)} (×{worst.factor:.3g} there): the multiply by "
                        f"the learned parameter {scale.leaf.name}, whose values are at most {top:.3g}. That is its "
                        "scale, not a vanishing gradient: a layer scale (LayerScale, ConvNeXt/CaiT's gamma, 1e-6 "
                        "at init) keeps its branch small on purpose, and the gradient grows as it trains.")  # fmt: skip
                return Why(name, "unknown", text, where=node.id, source=node.source)
        return None
    if node.name.startswith(SATURATING):  # a saturated sigmoid / tanh: said as such by _vanishing
        return None
    tiny = _tiny_inputs(node)
    if tiny is not None:  # its derivative is its input (x.pow(2)): the forward's values vanished, not rounding
        loss = graph.run.loss
        said = f" (the loss is {loss:.3g})" if loss is not None and math.isfinite(loss) else ""
        text = (f"{start}: it shrinks ×{worst.factor:.3g} in {in_module(node)}, whose input values are themselves "
                f"tiny (RMS {tiny:.3g}), so the gradient it passes on, which scales with them, is too. The forward's "
                f"values vanished before reaching it{said}: the layers before it shrink the activations, and the "
                "gradient back through them shrinks alike. A genuine gradient that vanished with them, no "
                "cancellation: check the initialization (weights too small: Kaiming, Xavier), or add normalization "
                "(LayerNorm, BatchNorm) or residual connections.")  # fmt: skip
        return Why(name, "vanishing", text, where=node.id, source=node.source)
    text = (f"{start}: it shrinks ×{worst.factor:.3g} in one node, {in_module(node)}, so what comes after it is "
            f"(nearly) constant in its input — the loss barely depends on {name} through it, and what is left is "
            "rounding noise (a softmax summed over its dim is 1 whatever the input; a normalization followed by a "
            "mean). Not a vanishing gradient: check that the loss is what you meant.")  # fmt: skip
    return Why(name, "zero", text, where=node.id, source=node.source)


def _tiny_inputs(node: Node) -> float | None:
    """The largest RMS of the tensors ``node`` saved (its inputs, or its result), when statistics were
    taken and every one is at most :data:`VANISHING`: values that small make any backward that scales with
    them (a power, a product) shrink the gradient, with no cancellation involved. Else None."""
    found = [s.norm / math.sqrt(s.numel) for s in node.saved.values()
             if isinstance(s, TensorSummary) and s.norm is not None and s.numel and math.isfinite(s.norm)]  # fmt: skip
    return max(found) if found and max(found) <= VANISHING else None


def _same(n: Node, leaf: Node) -> bool:
    """``n`` passed the leaf its gradient unchanged (a transpose, a view of a weight)."""
    a, b = rms(n), rms(leaf)
    return a is not None and b is not None and numel(n) == numel(leaf) and 0.5 <= a / b <= 2.0


def _most(steps: list[Step], grow: bool) -> tuple[str, Step, bool]:
    """Where the gradient grows (shrinks) most along the path, in words; the node to point at; and
    whether it is one module's op repeated (a recurrent layer over time steps). The op whose nodes
    together grow (shrink) it most — a recurrent matmul over 50 time steps, 12 sigmoids — and,
    among them, the one that does it most."""
    total: dict[str, tuple[int, float]] = {}
    for s in steps:
        k, log = total.get(s.node.name, (0, 0.0))
        total[s.node.name] = (k + 1, log + math.log10(s.factor))
    op, (k, log) = (max if grow else min)(total.items(), key=lambda item: item[1][1])
    members = [s for s in steps if s.node.name == op]
    at = (max if grow else min)(members, key=lambda s: s.factor)
    verb = "grows" if grow else "shrinks"
    if k == 1:
        return f"It {verb} most in {in_module(at.node)} (×{at.factor:.3g} there)", at, False
    repeated = k > 2 and len({s.node.module for s in members}) == 1
    return (f"It {verb} most through {op}: the {k} on the path together {verb.removesuffix('s')} it "
            f"×{10.0**log:.3g}, most in {in_module(at.node)} (×{at.factor:.3g} there)", at, repeated)  # fmt: skip


def _reuses(leaf: Node, graph: Graph) -> tuple[int, Node] | None:
    """How many times one op of one module uses ``leaf`` (directly or through a transpose / view), and
    one of them, when more than twice: a recurrent weight applied at every time step."""
    feeds = {leaf.id}
    for n in graph.nodes:  # the transposes / views of the leaf
        if n.name.startswith(("T", "Transpose", "View", "Expand", "Permute")) and any(d == leaf.id for d, _ in n.next):
            feeds.add(n.id)
    users: dict[tuple[str, str | None], list[Node]] = {}
    for n in graph.nodes:
        if n.id not in feeds and any(d in feeds for d, _ in n.next):
            users.setdefault((n.name, n.module), []).append(n)
    most = max(users.values(), key=len, default=[])
    return (len(most), most[0]) if len(most) > 2 else None


def _exploding(name: str, leaf: Node, own: float, growth: float, root: Node, steps: list[Step],
               graph: Graph) -> Why:  # fmt: skip
    where, at, repeated = _most(steps, grow=True)
    reused = _reuses(leaf, graph) if not repeated else None  # the path shows no repeat
    if reused is not None:
        k, user = reused
        where += (f". {name} is applied {k} times by {in_module(user)} (a recurrence over time steps, or a weight "
                  "shared across layers): each application multiplies the gradient again")  # fmt: skip
        repeated = user.name.startswith(("Mm", "Addmm", "Bmm", "Mv"))
        at = Step(user, at.factor) if repeated else at
    loss = graph.run.loss
    if loss is not None and math.isfinite(loss) and abs(loss) >= 1e6 and numel(at.node) > 1:
        where += (f". The loss itself is {loss:.3g}: the forward's values exploded too (activations growing through "
                  "the layers or time steps), and the gradient grows with them")  # fmt: skip
    hint = ("Clip the gradient norm before the optimizer step (torch.nn.utils.clip_grad_norm_(model.parameters(), "
            "max_norm=1.0)), lower the learning rate, and check the initialization (weights too large) or add "
            "normalization (LayerNorm, BatchNorm).")  # fmt: skip
    if numel(at.node) == 1 and at.node.name.startswith(("Mul", "Div")):
        hint = (f"{at.node.name} multiplies the loss itself (one value) by ×{at.factor:.3g}: a loss weight or scale "
                "that large grows every gradient alike — check it (a GradScaler's scaled loss is unscaled before "
                "the step: unscale_ before clipping). " + hint)  # fmt: skip
    if repeated and at.node.name.startswith(("Mm", "Addmm", "Bmm", "Mv")):
        hint += (" A matmul repeated along the path (a recurrent weight applied at every time step) grows the "
                 "gradient whenever the weight's largest singular value is above 1: initialize it orthogonal or "
                 "smaller, or use an LSTM/GRU.")  # fmt: skip
    text = (f"{name}'s gradient is exploding: norm {leaf.grad_norm:.3g} (RMS {own:.3g} per value), {growth:.3g}× "
            f"that of the gradient backward started from (in {root.name}). {where}. {hint}")  # fmt: skip
    return Why(name, "exploding", text, where=at.node.id, source=at.node.source)


def _vanishing(name: str, leaf: Node, own: float, ratio: float, peak: Node, steps: list[Step]) -> Why:
    where, at, _ = _most(steps, grow=False)
    if at.node.name.startswith(SATURATING):
        hint = ("Sigmoid and tanh saturate: their derivative is at most 0.25 (sigmoid) and near 0 for large inputs, "
                "so a stack of them shrinks the gradient layer after layer. Use ReLU/GELU, normalize before them "
                "(BatchNorm, LayerNorm), add residual connections, or initialize with Xavier/Kaiming.")  # fmt: skip
    else:
        hint = ("Normalization layers, residual connections or a better initialization (Kaiming, Xavier) keep the "
                "gradient from shrinking with depth; at this size a step leaves the weights unchanged.")  # fmt: skip
    text = (f"{name}'s gradient is vanishing: norm {leaf.grad_norm:.3g} (RMS {own:.3g} per value), {ratio:.2g}× "
            f"that of the largest gradient on its path to the loss (into {in_module(peak)}). "
            f"{where}. {hint}")  # fmt: skip
    return Why(name, "vanishing", text, where=at.node.id, source=at.node.source)
