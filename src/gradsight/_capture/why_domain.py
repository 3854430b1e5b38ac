"""An op at the edge of its domain, told from the statistics of what it saved (:func:`edge`): sqrt of a
negative number is NaN, log of 0 is -Inf, acos past ±1 is NaN — NaN/Inf the op *made in the forward*
from finite inputs — or, where its forward stayed finite, a derivative that is infinite there (sqrt's
at 0, acos's at ±1).

Either way its backward turns a finite gradient into NaN, even where ``torch.where`` (``masked_fill``,
indexing) threw its output away: the discarded elements get a zero gradient, times the op's
derivative there, and 0 × NaN = 0 × ∞ = NaN (pytorch/pytorch#52248: autograd cannot tell "no
gradient" from "zero gradient"). An epsilon inside does not help a negative input; making the input
safe *before* the op does (the "double where"), and that is what :func:`domain_why` advises.

    >>> from gradsight.graph import Node, TensorSummary
    >>> r = TensorSummary((6,), "float32", "cpu", 6, min=0.75, max=1.2, nan_count=4, inf_count=0)
    >>> e = edge(Node("n", "SqrtBackward0", "op", saved={"_saved_result": r}))
    >>> e.made, e.gives, e.what
    (True, 'NaN', 'sqrt of a negative number is NaN, and its output holds 4 NaN')
    >>> edge(Node("n", "LogBackward0", "op", saved={"_saved_self": r})) is None  # log of 0.75 … 1.2
    True
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..graph import Graph, Node, TensorSummary, Why
from .why_values import counted, in_module

# ops that throw away some elements of their input in the forward: what they dropped still gets a
# (zero) gradient in the backward
MASKS = ("Where", "MaskedFill", "MaskedScatter", "MaskedSelect", "Index", "NanToNum")
HOPS = 4  # nodes followed from the op: up to what discarded its output, down to where its input came from


@dataclass(frozen=True)
class Edge:
    """What an op did at the edge of its domain. ``made``: its forward made NaN/Inf of finite inputs
    (``gives``: which; False: only its derivative is infinite there); ``what``: that in words; ``fn``:
    the op as the user calls it (``x.sqrt()``); ``safe``: a value inside its domain; ``clamp``: the
    input clamped into it; ``saves_input``: its input's statistics were saved (else only its result)."""

    made: bool
    gives: str
    what: str
    fn: str
    safe: str
    clamp: str
    saves_input: bool = True


def _summary(n: Node, key: str) -> TensorSummary | None:
    s = n.saved.get(key)
    return s if isinstance(s, TensorSummary) else None


def _range(s: TensorSummary | None) -> tuple[float, float] | None:
    """(min, max) of the tensor ``s`` summarizes when its statistics say every value is finite."""
    if s is None or s.nan_count != 0 or s.inf_count != 0 or s.min is None or s.max is None:
        return None
    return s.min, s.max


def edge(n: Node) -> Edge | None:
    """What ``n`` did at the edge of its op's domain, from what it saved; None when its statistics do
    not show it (not taken, inputs already NaN/Inf, all in range) or the op has no such edge here."""
    op = n.name.rstrip("0123456789").removesuffix("Backward")
    if op in ("Sqrt", "Rsqrt", "Reciprocal"):
        return _from_result(op, _summary(n, "_saved_result"))
    if op == "Div":
        d = _range(_summary(n, "_saved_other"))
        if d is None or 0.0 not in d:
            return None
        return Edge(True, "NaN/Inf", "its divisor holds 0 (x / 0 is Inf, 0 / 0 is NaN)", "y / d", "1",
                    "y / torch.where(d == 0, eps, d)")  # fmt: skip
    x = _range(_summary(n, "_saved_self"))
    if x is None:
        return None
    if op == "Pow":
        return _pow(x, n.saved.get("_saved_exponent"))
    if op not in _RANGES:
        return None
    low, high, infinite, fn, safe = _RANGES[op]
    (lo, hi), fx = x, f"x.{fn}()"
    span = f"{lo:.4g} to {hi:.4g}"
    eps = f"{low:g} + eps" if low else "eps"
    clamp = f"x.clamp({eps}, {high:g} - eps).{fn}()" if high is not None else f"x.clamp(min={eps}).{fn}()"
    if lo < low or (high is not None and hi > high):
        where = f"outside [{low:g}, {high:g}]" if high is not None else f"below {low:g}"
        return Edge(True, "NaN", f"its input has values {where} ({span}), and {fn} of those is NaN", fx, safe, clamp)
    at = low if lo == low else high if high is not None and hi == high else None
    if at is None:
        return None
    if at in infinite:
        return Edge(True, "Inf", f"its input holds {at:g} ({span}), where {fn} is infinite", fx, safe, clamp)
    return Edge(False, "", f"its input reaches {at:g} ({span}), where {fn}'s derivative is infinite", fx, safe, clamp)


# op -> (low, high, the ends where the op itself is infinite, its name, a safe input): domain [low, high]
_RANGES: Mapping[str, tuple[float, float | None, Collection[float], str, str]] = {
    "Log": (0, None, (0,), "log", "1"),
    "Log2": (0, None, (0,), "log2", "1"),
    "Log10": (0, None, (0,), "log10", "1"),
    "Log1P": (-1, None, (-1,), "log1p", "0"),
    "Acos": (-1, 1, (), "acos", "0"),
    "Asin": (-1, 1, (), "asin", "0"),
    "Atanh": (-1, 1, (-1, 1), "atanh", "0"),
    "Acosh": (1, None, (), "acosh", "2"),
}


def _from_result(op: str, r: TensorSummary | None) -> Edge | None:
    """sqrt, rsqrt, 1/x: they save only their result, which shows what they made."""
    if r is None or r.nan_count is None or r.inf_count is None:
        return None
    fn = op.lower()
    fx, clamp = f"x.{fn}()", f"x.clamp(min=eps).{fn}()"
    if r.nan_count and op != "Reciprocal":
        what = f"{fn} of a negative number is NaN, and its output holds {counted(r.nan_count, r.inf_count)}"
        return Edge(True, "NaN", what, fx, "1", clamp, saves_input=False)
    if r.inf_count and not r.nan_count and op != "Sqrt":
        clamp = "1 / torch.where(x == 0, eps, x)" if op == "Reciprocal" else clamp
        what = f"its input holds 0, where {fn} is infinite: its output holds {counted(0, r.inf_count)}"
        return Edge(True, "Inf", what, fx, "1", clamp, saves_input=False)
    if op == "Sqrt" and r.min == 0.0 and not r.nan_count and not r.inf_count:
        what = "its output holds 0, where sqrt's derivative 1 / (2√x) is infinite: add a small epsilon inside"
        return Edge(False, "", what, fx, "1", "(x + eps).sqrt()", saves_input=False)
    return None


def overflow_edge(m: Node) -> Edge:
    """An exp (``m``: ExpBackward0, Exp2Backward0, Expm1Backward0) whose output overflowed to Inf."""
    fn = m.name.rstrip("0123456789").removesuffix("Backward").lower()
    return Edge(True, "Inf", f"{fn} of a large number overflows to Inf", f"x.{fn}()", "0", f"x.clamp(max=80).{fn}()")


def _pow(x: tuple[float, float], e: object) -> Edge | None:
    """x ** e for a number e: a negative base to a fractional power is NaN; 0 to a power below 1 has
    an infinite derivative (and 0 to a negative power is Inf)."""
    if not isinstance(e, (int, float)) or isinstance(e, bool):
        return None
    fx, clamp = f"x.pow({e:g})", f"x.clamp(min=eps).pow({e:g})"
    if x[0] < 0 and not float(e).is_integer():
        what = f"its input has values below 0 (down to {x[0]:.4g}), and a negative number to the power {e:g} is NaN"
        return Edge(True, "NaN", what, fx, "1", clamp)
    if 0.0 in x and e < 1 and e != 0:
        if e < 0:
            return Edge(True, "Inf", f"its input holds 0, and 0 to the power {e:g} is Inf", fx, "1", clamp)
        return Edge(False, "", f"its input holds 0, where x^{e:g}'s derivative is infinite", fx, "1", clamp)
    return None


def masker(p: Node, graph: Graph) -> Node | None:
    """The op above ``p`` (within :data:`HOPS` consumers) that discards elements: ``torch.where``,
    ``masked_fill``, indexing (:data:`MASKS`)."""
    consumers = _consumers(graph)
    level, seen = [p], {p.id}
    for _ in range(HOPS):
        up = []
        for n in level:
            for c in consumers.get(n.id, ()):
                if c.name.startswith(MASKS):
                    return c
                if c.id not in seen:
                    seen.add(c.id)
                    up.append(c)
        level = up
    return None


def _consumers(graph: Graph) -> dict[str, list[Node]]:
    """Node id -> the nodes whose ``next`` edges point at it; kept with the graph (one walk, asked per leaf)."""
    found = graph._memo.get("consumers")
    if not isinstance(found, dict):
        found = {}
        for n in graph.nodes:
            for dst, _ in n.next:
                if dst is not None:
                    found.setdefault(dst, []).append(n)
        graph._memo["consumers"] = found
    return found


def discarded(p: Node, graph: Graph, made: bool = True) -> str | None:
    """Who threw away what ``p`` gave at its domain's edge, in words: the masking op above it, or, for
    NaN/Inf its forward ``made`` that did not reach a finite loss, an op after it. None when they
    reached the loss, or nothing tells (a finite forward at the edge and no mask: its gradient is Inf
    there, no 0 × ∞)."""
    loss = graph.run.loss
    if made and loss is not None and not math.isfinite(loss):
        return None  # they reached the loss: nothing discarded them all
    m = masker(p, graph)
    if m is not None:
        return in_module(m)
    return "an op after it (the loss is finite)" if made and loss is not None else None


def masked_note(e: Edge, by: str) -> str:
    """Why a discarded element's gradient is NaN all the same, and the double where that avoids it."""
    times = "0 × NaN or 0 × ∞" if e.made else "0 × ∞"
    eps = "An epsilon (x + eps) does not help a negative input: " if e.gives == "NaN" else ""
    return (f" {by} discarded those elements, but a discarded element still gets a gradient: 0, times the "
            f"derivative there, and {times} is NaN (autograd cannot skip it, pytorch/pytorch#52248). {eps}"
            f"{'m' if eps else 'M'}ake the input safe before the op, so it never sees those values — {e.clamp}, or "
            f"the double where: torch.where(ok, {_inner(e)}, other).")  # fmt: skip


def _inner(e: Edge) -> str:
    if e.fn == "y / d":
        return "y / torch.where(ok, d, 1)"
    return e.fn.replace("x.", f"torch.where(ok, x, {e.safe}).", 1)


def masked_hint(p: Node, graph: Graph) -> str:
    """For an op whose backward made a gradient NaN where :func:`edge` cannot tell why (statistics not
    taken, a divisor that may hold 0): the masking op above it, when there is one, and the double where.
    "" without one."""
    m = masker(p, graph)
    if m is None:
        return ""
    return (f" {in_module(m)} above it discards some of its output, but a discarded element still gets a "
            "gradient: 0, times this op's derivative there, and 0 × NaN or 0 × ∞ is NaN wherever the op is "
            "undefined or steep (pytorch/pytorch#52248). Make its input safe before the op rather than after: "
            "the double where, torch.where(ok, f(torch.where(ok, x, safe_value)), other).")  # fmt: skip


def forward_hint(m: Node, p: Node, graph: Graph) -> str | None:
    """For the op ``m`` that made the forward's NaN/Inf (which ``p``'s backward carried into the
    gradient): what its domain says of it and how to keep its input inside; None when :func:`edge`
    tells nothing."""
    e = edge(m)
    if e is None or not e.made:
        return None
    by = discarded(p, graph)
    return f"{m.name}: {e.what}." + (masked_note(e, by) if by is not None else f" Keep its input in the domain: "
                                     f"{e.clamp}, or find why it goes there.")  # fmt: skip


def domain_why(name: str, p: Node, graph: Graph, looked: Collection[str] = (), bad: Collection[str] = ()) -> Why | None:
    """Why ``name``'s gradient is NaN/Inf when ``p``, whose backward made it so from a finite gradient,
    is an op at the edge of its domain (:func:`edge`), or carried NaN/Inf that an op just below it made
    there; None when the statistics do not show that. ``looked``: names of leaves whose values were
    looked at, ``bad``: those of them holding NaN/Inf (the others tell that an op saving only its
    result had finite inputs)."""
    e = edge(p)
    if e is None:
        return None
    m, carried = p, ""
    if e.made and not e.saves_input:
        known, below = _input_finite(p, graph, looked, bad)
        if below is not None and (e := edge(below)) is not None:  # an op below made them: name it
            m, known = below, True
            carried = f" (the backward of {in_module(p)} was the first to carry them into the gradient)"
        elif known is False or e is None:
            return None  # NaN/Inf were in its input already: the forward's cause is upstream
    else:
        known = True
    op = in_module(m)
    if e.made:
        inputs = "from finite inputs" if known else "(unless its input, not saved, held them already)"
        head = f"{name}'s gradient has NaN or Inf: {op} made {e.gives} in the forward {inputs} — {e.what}"
        by = discarded(m, graph)
        if by is not None:
            text = f"{head}{carried}.{masked_note(e, by)}"
        else:
            text = (f"{head} — and the backward passed them on toward {name}{carried}. Keep its input in the domain: "
                    f"{e.clamp}, or find why it goes there.")  # fmt: skip
    else:
        head = (f"{name}'s gradient has NaN or Inf: it became non-finite in {op}, which received a finite gradient "
                f"and passed NaN/Inf on toward {name}: {e.what}")  # fmt: skip
        by = discarded(p, graph, made=False)
        text = f"{head}.{masked_note(e, by)}" if by is not None else f"{head}: {e.clamp}."
    return Why(name, "nonfinite", text, where=m.id, source=m.source)


def _input_finite(
    p: Node, graph: Graph, looked: Collection[str], bad: Collection[str]
) -> tuple[bool | None, Node | None]:
    """Whether what flowed into ``p`` in the forward was finite (None: not known), down through ops
    that save no tensors (a sum, a view: no NaN out of finite inputs) to leaves whose values were
    looked at, and ops whose saved tensors tell (a saved result, or finite inputs of an op that is at
    no edge of its domain); with the op below that made NaN/Inf at its domain's edge, if one did."""
    nodes, level, sure = graph.by_id, [p], True
    for _ in range(HOPS):
        below = [nodes[d] for n in level for d, _ in n.next if d is not None and d in nodes]
        level = []
        for c in below:
            tensors = [s for v in c.saved.values() for s in _flat(v)]
            e = edge(c) if tensors else None
            if e is not None and e.made:
                return False, c
            if any(s.nonfinite for s in tensors):
                return False, None
            if c.leaf is not None:
                if c.leaf.name in bad:
                    return False, None
                sure = sure and c.leaf.name in looked
            elif tensors:
                sure = sure and all(s.nan_count == 0 and s.inf_count == 0 for s in tensors)
            else:
                level.append(c)  # saves nothing: look below it
        if not level:
            return (True if sure else None), None
    return None, None


def _flat(v: object) -> list[TensorSummary]:
    if isinstance(v, TensorSummary):
        return [v]
    return [s for x in v for s in _flat(x)] if isinstance(v, tuple) else []
