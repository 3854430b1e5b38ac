"""Turn what the hooks recorded into the graph's gradients: in and out, executed flags, norms.

Norms of the gradients into every hooked node come from the hooks (0-d tensors, one sync at the
end); nodes left unhooked (hooks.derivable) take their child's.
Kept gradients (out of kept nodes) get their norms after backward (``summary.norm_of``: accurate,
rescaled where squares over- or underflow), and full statistics only when they are not finite
(NaN/Inf counts). A hook's norm of exactly 0 is taken again from the kept gradient its consumer
passed (:func:`_zero_norms`): a float32 ``vector_norm`` of values under 1e-19 underflows to 0.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ..graph import Graph, RunInfo, TensorSummary
from .hooks import GradRecorder
from .records import Collected, Gradients
from .store import TensorStore
from .summary import hook_norm_holds, meta_from, norm_of, summarize, underflowed
from .walk import build

Key = tuple[int, str]


def build_with_gradients(c: Collected, rec: GradRecorder, store: TensorStore, run: RunInfo) -> Graph:
    grad_in = rec.summaries()
    for i, kept in rec.grad_in.items():  # kept (and leaves): full summaries when not finite
        grad_in[i] = _merge(i, "grad-in", kept, grad_in.get(i), store)
    grad_out = {i: _merge(i, "grad-out", kept, None, store) for i, kept in rec.grad_out.items()}
    _zero_norms(c, store, grad_in, grad_out)
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
        hooked = seen[k] if seen is not None and k < len(seen) else None
        if hooked is not None and hooked.norm is not None and hook_norm_holds(hooked.norm, t):
            out.append(s.with_norm(hooked.norm))  # the hook took this gradient's norm already
            continue
        # sparse (its stored values), expanded (its storage): accurate at 10M elements too
        norm = norm_of(t, tiny=hooked is not None and underflowed(hooked.norm, t))
        out.append(s.with_norm(norm) if norm is not None and math.isfinite(norm) else summarize(t, freed=s.freed))
    return tuple(out)


def _zero_norms(c: Collected, store: TensorStore, grad_in: dict[int, tuple[TensorSummary | None, ...]],
                grad_out: dict[int, tuple[TensorSummary | None, ...]]) -> None:  # fmt: skip
    """Hook norms of exactly 0 or inf taken again from the gradients the node's consumers passed it,
    where those are kept (as their grad-out): a leaf's in live mode, whose own gradient never is. A
    float32 ``vector_norm`` of values under 1e-19 underflows to 0, of finite ones past 1.8e19 overflows
    to inf (and why() then blamed the op that passed them on), and rescaling in every hook would cost
    a kernel per node (hooks.py); where nothing is kept they stay. One consumer's grad-out norm is
    already accurate (:func:`_merge`): no kernel for it."""
    if not len(store):  # nothing kept to take them from
        return
    zeros = {(i, k) for i, row in grad_in.items() for k, s in enumerate(row)
             if s is not None and s.norm in (0.0, math.inf) and s.min is None}  # fmt: skip
    if not zeros:
        return
    senders: dict[tuple[int, int], list[Key]] = {}
    for p, edges in enumerate(c.edges):
        for j, (child, nr) in enumerate(edges):
            if child is not None and (child, nr) in zeros:
                senders.setdefault((child, nr), []).append((p, f"grad-out:{j}"))
    for (i, k), keys in senders.items():
        sent = [t for t in (store.get(key) for key in keys) if t is not None]
        if len(sent) < len(keys):
            continue
        if len(keys) == 1:  # a dead layer's weight: its one consumer's grad-out, its norm taken already
            p, key = keys[0]
            row = grad_out.get(p, ())
            nr = int(key.rsplit(":", 1)[1])
            known = row[nr] if nr < len(row) else None
            if known is not None and known.norm is not None:
                _renorm(grad_in, i, k, known.norm)
                continue
        total = sent[0]
        for t in sent[1:]:
            total = total + t
        hooked = grad_in[i][k]
        _renorm(grad_in, i, k, norm_of(total, tiny=hooked is not None and underflowed(hooked.norm, total)))


def _renorm(grad_in: dict[int, tuple[TensorSummary | None, ...]], i: int, k: int, norm: float | None) -> None:
    """``grad_in[i][k]`` with ``norm`` taken again: when it is finite and not 0 (an inf one loses its note)."""
    s = grad_in[i][k]
    if s is None or not norm or not math.isfinite(norm):
        return
    fixed = s.with_norm(norm) if s.norm == 0.0 else replace(s, norm=norm, note=None)
    grad_in[i] = (*grad_in[i][:k], fixed, *grad_in[i][k + 1 :])


def total_norm(grads: tuple[TensorSummary | None, ...]) -> float | None:
    """The 2-norm of all ``grads`` together: NaN or inf when one of them is (a NaN loss is what the user
    is debugging; the wire sends it as null, or as text where schema.number does)."""
    norms = [g.norm for g in grads if g is not None and g.norm is not None]
    if not norms:
        return None
    total = math.hypot(*norms)  # no squares to overflow (exploding gradients) or underflow
    return math.nan if math.isnan(sum(norms)) else total
