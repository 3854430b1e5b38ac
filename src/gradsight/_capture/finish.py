"""Turn what the hooks recorded into the graph's gradients: in and out, executed flags, norms.

Norms of the gradients into every hooked node come from the hooks (0-d tensors, one sync at the
end); nodes left unhooked (hooks.derivable) take their child's.
Kept gradients (out of kept nodes) get their norms in one batch after backward
(``torch._foreach_norm``), and full statistics only when they are not finite (NaN/Inf counts).
"""

from __future__ import annotations

import math

import torch

from ..graph import Graph, RunInfo, TensorSummary
from .hooks import GradRecorder
from .records import Collected, Gradients
from .store import TensorStore
from .summary import flat_norm, meta_from, norm_of, summarize
from .walk import build

Key = tuple[int, str]
_HALF = (torch.float16, torch.bfloat16)  # their norms in float32: 65504 is float16's largest value


def build_with_gradients(c: Collected, rec: GradRecorder, store: TensorStore, run: RunInfo) -> Graph:
    grad_in = rec.summaries()
    for i, kept in rec.grad_in.items():  # kept (and leaves): full summaries when not finite
        grad_in[i] = _merge(i, "grad-in", kept, grad_in.get(i), store)
    grad_out = {i: _merge(i, "grad-out", kept, None, store) for i, kept in rec.grad_out.items()}
    _fill_derived(c, rec, grad_in)
    totals = {i: total_norm(g) for i, g in grad_in.items()}
    run = RunInfo(mode=run.mode, step=run.step, root_gradient=run.root_gradient, loss=run.loss,
                  kept_bytes=store.kept_bytes, budget_bytes=store.budget_bytes, dropped=store.dropped,
                  errors=tuple(rec.errors))  # fmt: skip
    return build(c, Gradients(grad_in, grad_out, rec.executed, totals), run)


def _fill_derived(c: Collected, rec: GradRecorder, grad_in: dict[int, tuple[TensorSummary | None, ...]]) -> None:
    """The nodes left unhooked (hooks.derivable): shape from the graph, norm and ran-or-not from the
    child their gradient went to unchanged. A child is found later in the walk than its one consumer,
    so going backwards through the walk resolves chains (view → transpose → view) child first."""
    for i in sorted(rec.derived, reverse=True):
        child, nr = rec.derived[i]
        if child not in rec.executed:
            continue
        rec.executed.add(i)
        source = grad_in.get(child, ())
        below = source[nr] if nr < len(source) else None
        out = c.outputs[i][0]
        s = meta_from(out.shape, out.dtype, out.device, math.prod(out.shape))
        grad_in[i] = (s if below is None or below.norm is None else s.with_norm(below.norm),)


def _merge(i: int, kind: str, kept: tuple[TensorSummary | None, ...], seen: tuple[TensorSummary | None, ...] | None,
           store: TensorStore) -> tuple[TensorSummary | None, ...]:  # fmt: skip
    out: list[TensorSummary | None] = []
    for k, s in enumerate(kept):
        t = store.get((i, f"{kind}:{k}"))
        if s is None or t is None or not t.numel() or t.is_meta:
            prior = seen[k] if seen is not None and k < len(seen) else None
            out.append(s if s is not None and s.norm is not None else prior if prior is not None else s)
            continue
        if s.min is not None or store.take_eager(t):  # small captures: every statistic, now
            out.append(s if s.min is not None else summarize(t, stats=True, freed=s.freed))
            continue
        if t.layout != torch.strided:  # a sparse gradient (nn.Embedding(sparse=True)): its stored values
            norm = norm_of(t)
        else:
            flat = t.detach().reshape(-1)  # flat_norm: accurate for a 10M-element weight's gradient too
            norm = flat_norm(flat.float() if flat.dtype in _HALF else flat)
        out.append(s.with_norm(norm) if norm is not None and math.isfinite(norm) else summarize(t, freed=s.freed))
    return tuple(out)


def total_norm(grads: tuple[TensorSummary | None, ...]) -> float | None:
    norms = [g.norm for g in grads if g is not None and g.norm is not None]
    if not norms:
        return None
    total = math.sqrt(sum(n * n for n in norms))
    return total if math.isfinite(total) else None
