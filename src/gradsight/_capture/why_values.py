"""NaN/Inf that a leaf's own values hold, read when why() is asked: where the capture took no
statistics of saved tensors (graphs past ``store.EAGER_NODES``, live steps), the forward's NaN/Inf
cannot be traced node by node, but a parameter (or input) that already holds them is found by looking
at it — one ``isfinite`` per leaf, once per graph, reading the tensors and changing nothing.

    >>> nonfinite_count(torch.tensor([1.0, float("nan"), float("inf")])), nonfinite_count(torch.ones(2))
    ('1 NaN and 1 Inf', None)
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import torch

from ..graph import Graph, Node, Why

SHOWN = 3  # leaves named in one answer


def nonfinite_count(t: torch.Tensor | None) -> str | None:
    """How many NaN / Inf ``t`` holds, in words; None when it holds none (or cannot be read)."""
    if t is None or not (t.is_floating_point() or t.is_complex()) or t.is_meta or t.is_sparse:
        return None
    try:
        with torch.no_grad():
            v = t.detach()
            if bool(torch.isfinite(v).all()):
                return None
            nan, inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
    except (RuntimeError, NotImplementedError, ValueError):  # a subclass, freed or lazy storage: say nothing
        return None
    return counted(nan, inf) or "NaN or Inf"


def counted(nan: int | None, inf: int | None) -> str:
    """``1,234 NaN and 5 Inf``; empty when neither is counted."""
    return " and ".join(f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "Inf")) if n)


def _version(t: torch.Tensor) -> int:
    """``t._version``, or -1 where torch keeps none (an inference tensor) or refuses to say (a lazy
    module's ``UninitializedParameter`` raises ValueError on any use)."""
    try:
        return -1 if t.is_inference() else t._version
    except (RuntimeError, ValueError):
        return -1


def in_module(n: Node) -> str:
    """A node as an answer names it: ``AddmmBackward0 (in fc1)``."""
    return f"{n.name} (in {n.module})" if n.module else n.name


def _key(values: Mapping[str, torch.Tensor | None]) -> tuple[tuple[str, int, int], ...]:
    return tuple((name, id(t), _version(t)) for name, t in values.items() if t is not None)


class LeafValues:
    """The graph's named leaves whose tensors (``values``: name → tensor, as the target has them now)
    hold NaN/Inf, in graph order; looked at once, when first asked."""

    def __init__(self, graph: Graph, values: Mapping[str, torch.Tensor | None] | None) -> None:
        # weakly: kept with the graph (``why_flow.starts_of``), this must not keep the user's tensors alive
        self.graph = graph
        self._refs = {name: weakref.ref(t) for name, t in (values or {}).items() if t is not None}
        self._bad: list[tuple[Node, str]] | None = None
        self._key = _key(values or {})

    @property
    def values(self) -> dict[str, torch.Tensor]:
        """The leaves' tensors still alive."""
        return {name: t for name, ref in self._refs.items() if (t := ref()) is not None}

    def same(self, values: Mapping[str, torch.Tensor | None] | None) -> bool:
        """Whether ``values`` are the tensors looked at here, none edited since."""
        values = values or {}
        return self._key == _key(values) and all(ref() is values.get(name) for name, ref in self._refs.items())

    def bad(self) -> list[tuple[Node, str]]:
        if self._bad is None:
            self._bad = []
            values = self.values
            for n in self.graph.nodes:
                if n.leaf is not None and n.leaf.name and n.leaf.name in values:
                    count = nonfinite_count(values[n.leaf.name])
                    if count is not None and all(b.id != n.id for b, _ in self._bad):
                        self._bad.append((n, count))
        return self._bad


def from_leaves(name: str, bad: list[tuple[Node, str]], carrier: Node | None) -> Why:
    """Why ``name``'s gradient is NaN/Inf when leaves of its graph (``bad``) hold NaN/Inf themselves:
    the forward computed from them, so its values and the loss were NaN/Inf before any backward.
    ``carrier``: the node whose backward first passed them into the gradient (None: the root's)."""
    shown = [f"{n.leaf.name} ({count})" for n, count in bad[:SHOWN] if n.leaf is not None]
    subject = ", ".join(shown) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
    which, it = ("hold", "them") if len(bad) > 1 else ("holds", "it")
    carried = f"; {carrier.name} was the first backward to carry them into the gradient" if carrier else ""
    text = (f"{name}'s gradient has NaN or Inf because the forward values already did: {subject} {which} NaN/Inf "
            f"values now, and what the forward computed from {it} is NaN/Inf too{carried}. Likely a parameter that "
            "a too-large step made diverge (lower the learning rate, clip gradients) or one initialized badly: "
            "restore it from a checkpoint or re-initialize it.")  # fmt: skip
    return Why(name, "nonfinite", text, where=bad[0][0].id)
