"""Put what the hooks recorded onto the graph: gradients in and out, executed flags, norms.

Gradient norms are taken in one batch after backward (``torch._foreach_norm`` groups tensors by
device and dtype), not inside the hooks: statistics in hooks cost 3–13× the backward
(research/autograd-facts.md §5.2). Full statistics wait for a click.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..graph import Graph, RunInfo, TensorSummary
from .hooks import GradRecorder
from .store import TensorStore
from .summary import summarize
from .walk import Collected


def add_gradients(graph: Graph, c: Collected, rec: GradRecorder, store: TensorStore, run: RunInfo) -> Graph:
    norms, nonfinite = _norms(rec, store)
    index = {node_id: i for i, node_id in enumerate(c.ids)}
    nodes = []
    for node in graph.nodes:
        i = index[node.id]
        grad_in = tuple(
            nonfinite.get((i, f"grad-in:{k}")) or _with_norm(s, norms.get((i, f"grad-in:{k}")))
            for k, s in enumerate(rec.grad_in.get(i, ()))
        )
        grad_out = tuple(
            nonfinite.get((i, f"grad-out:{k}")) or _with_norm(s, norms.get((i, f"grad-out:{k}")))
            for k, s in enumerate(rec.grad_out.get(i, ()))
        )
        total = _total_norm(grad_in)
        if total is None and i in rec.leaf_received:
            total = rec.leaf_received[i]
        nodes.append(replace(node, grad_in=grad_in, grad_out=grad_out, executed=i in rec.executed, grad_norm=total))
    run = replace(run, kept_bytes=store.kept_bytes, dropped=store.dropped, errors=tuple(rec.errors))
    return replace(graph, nodes=tuple(nodes), run=run)


Key = tuple[int, str]


def _norms(rec: GradRecorder, store: TensorStore) -> tuple[dict[Key, float], dict[Key, TensorSummary]]:
    """Norms of every kept gradient; full summaries (NaN/Inf counts) of those that are not finite."""
    keys: list[Key] = []
    tensors: list[torch.Tensor] = []
    for kind, table in (("grad-in", rec.grad_in), ("grad-out", rec.grad_out)):
        for i, grads in table.items():
            for k in range(len(grads)):
                t = store.get((i, f"{kind}:{k}"))
                if t is not None and t.layout == torch.strided and t.numel() > 0 and t.dtype.is_floating_point:
                    keys.append((i, f"{kind}:{k}"))
                    tensors.append(t.detach())
    if not tensors:
        return {}, {}
    with torch.no_grad():
        values = torch.stack([n.float().cpu() for n in torch._foreach_norm(tensors)]).tolist()
    norms = dict(zip(keys, values, strict=True))
    bad = {k: summarize(t, stats=True) for k, t, v in zip(keys, tensors, values, strict=True) if not math.isfinite(v)}
    return norms, bad


def _with_norm(s: TensorSummary | None, norm: float | None) -> TensorSummary | None:
    if s is None or norm is None or s.norm is not None:
        return s
    return replace(s, norm=norm)


def _total_norm(grads: tuple[TensorSummary | None, ...]) -> float | None:
    norms = [g.norm for g in grads if g is not None and g.norm is not None]
    if not norms:
        return None
    total = math.sqrt(sum(n * n for n in norms))
    return total if math.isfinite(total) else None
