"""The gradients a ``%%gradsight`` cell's watched backward computed, as its graph's summaries.

The spy's hooks (``spy_watch``) record each gradient's shape and norm, and keep the tensors while the
call's gradients fit ``options.keep_all_below``; they take no statistics (3-13x the backward). A
small capture (``store.EAGER_NODES``, within the store's eager allowance) gets every statistic here,
after the call returned, as a runnable run's does in ``finish.py``: ``dbg.graph`` carries min, max,
mean and std without an inspect (``TensorSummary``'s promise). A leaf's incoming gradient is never
kept (holding it would make autograd copy the parameter's gradient): its statistics are those of
the sum of what its consumers passed it, where all of them kept theirs and the leaf's ``.grad`` holds
exactly that sum — then it is what reached the leaf (a hook of the user's on it that flipped its sign,
permuted or rotated it keeps the norm, and the sum of a call the leaf did not run in can have its
norm too). Else the hook's norm only: after a ``torch.autograd.grad`` (no ``.grad``), or a ``.grad``
that held a gradient before, or that the cell changed since. A gradient the user changed in place
since the call (``torch.autograd.grad`` hands them a leaf's gradient itself) is no longer what
flowed: it keeps the hook's norm only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from ..graph import TensorSummary
from .finish import total_norm
from .guard import version_of
from .hooks import ACCUMULATE_GRAD, summaries_of
from .records import CaptureOptions, Gradients, Observed
from .store import EAGER_NODES, TensorStore
from .summary import summarize
from .walk import short_name

Row = tuple[TensorSummary | None, ...]


def observed_gradients(order: Sequence[Any], opts: CaptureOptions) -> Gradients:
    """The gradients a watched backward computed, by walk index (into each node, and those it
    produced where they were kept); nodes it did not run: not executed.

    >>> import torch
    >>> from gradsight._capture.spy_watch import Watch
    >>> from gradsight._capture.walk import walk
    >>> w = torch.ones(3, requires_grad=True)
    >>> loss = (2 * w).sum()
    >>> order = walk([loss.grad_fn])[0]
    >>> watch = Watch(order, [])
    >>> loss.backward()
    >>> watch.close()
    >>> seen, made = watch.results()
    >>> opts = CaptureOptions(observed=seen, produced=made, store=TensorStore(2**20))
    >>> [(s.min, s.max) for s in observed_gradients(order, opts).grad_in[2]]  # the leaf got 2s
    [(2.0, 2.0)]
    """
    metas: dict[int, tuple[Any, ...]] = {}
    produced: dict[int, tuple[Any, ...]] = {}
    for i, node in enumerate(order):
        seen = opts.observed.get(node)
        if seen is None:
            continue
        metas[i] = seen.metas
        out = opts.produced.get(node)
        if out is not None:
            produced[i] = out.metas
    grad_in, grad_out = summaries_of(metas), summaries_of(produced)
    for i in metas:  # node by node, as a runnable run's finish.py: into it, then what it produced
        grad_in[i] = _offer(opts.store, i, "grad-in", opts.observed[order[i]], grad_in[i])
        if i in produced:
            grad_out[i] = _offer(opts.store, i, "grad-out", opts.produced[order[i]], grad_out[i])
    leaves = [i for i in metas if short_name(order[i]) == ACCUMULATE_GRAD]
    if leaves and opts.store is not None and len(order) <= EAGER_NODES:  # past it no eager statistics: no walk
        sent = _sent(order, opts, {id(order[i]) for i in leaves})
        for i in leaves:
            grad = getattr(getattr(order[i], "variable", None), "grad", None)
            grad_in[i] = _leaf_stats(sent.get(id(order[i]), []), grad, grad_in[i], opts.store)
    return Gradients(grad_in, grad_out, set(metas), {i: total_norm(g) for i, g in grad_in.items()})


def _offer(store: TensorStore | None, i: int, kind: str, seen: Observed, row: Row) -> Row:
    """The kept gradients of ``seen`` to the store, and ``row`` (their hooks' summaries: shape and norm)
    with every statistic of those a small capture takes at once (``store.take_eager``)."""
    if seen.tensors is None or store is None:
        return row
    out = list(row)
    for k in range(len(seen.tensors)):
        t = _kept(seen, k)
        if t is None:
            continue
        key = (i, f"{kind}:{k}")
        store.offer(key, t, eager=False, version=seen.versions[k] if seen.versions is not None else None)
        fresh = k < len(out) and out[k] is not None and store.get(key) is t and _unchanged(seen, k)
        if fresh and store.take_eager(t):
            out[k] = summarize(t, stats=True)
    return tuple(out)


def _kept(seen: Observed | None, k: int) -> torch.Tensor | None:
    """The ``k``-th gradient ``seen`` kept, if any."""
    tensors = seen.tensors if seen is not None else None
    return tensors[k] if tensors is not None and k < len(tensors) else None


def _unchanged(seen: Observed, k: int) -> bool:
    """The ``k``-th gradient ``seen`` kept holds what the call left in it (and values to take statistics of)."""
    t = _kept(seen, k)
    versions = seen.versions
    version = versions[k] if versions is not None and k < len(versions) else None
    return t is not None and version is not None and version_of(t) == version and bool(t.numel()) and not t.is_meta


def _sent(order: Sequence[Any], opts: CaptureOptions, leaves: set[int]) -> dict[int, list[torch.Tensor | None]]:
    """id(leaf node) → the gradients the consumers that ran passed it (None: one kept nothing, or it
    changed in place since the call)."""
    sent: dict[int, list[torch.Tensor | None]] = {}
    for node in order:
        if node not in opts.observed:
            continue
        out = opts.produced.get(node)
        for k, (child, _) in enumerate(getattr(node, "next_functions", ())):
            if id(child) in leaves:
                sent.setdefault(id(child), []).append(_kept(out, k) if out is not None and _unchanged(out, k) else None)
    return sent


def _leaf_stats(sent: list[torch.Tensor | None], grad: Any, row: Row, store: TensorStore) -> Row:
    """A leaf's incoming gradient with every statistic: the sum of the gradients its consumers passed
    it (``sent``), when each was kept and is unchanged, the eager allowance takes it, and the leaf's
    ``.grad`` (``grad``) holds exactly that sum: what reached the leaf, as no norm can tell — a hook of
    the user's on the leaf that changed the gradient keeps its norm when it flips its sign, permutes
    or rotates it, and the sum of a call the leaf did not run in (an ``autograd.grad`` that dropped
    it) can have the norm of the leaf's own last one."""
    hooked = row[0] if len(row) == 1 else None
    if hooked is None or hooked.min is not None or hooked.norm is None or not math.isfinite(hooked.norm):
        return row
    tensors = [t for t in sent if t is not None and tuple(t.shape) == hooked.shape]
    if not tensors or len(tensors) < len(sent) or not store.take_eager(tensors[0]):
        return row
    with torch.no_grad():
        total = tensors[0]
        for t in tensors[1:]:
            total = total + t
    if not _holds(grad, total):
        return row
    stats = summarize(total, stats=True)
    if stats.norm is None or not math.isclose(stats.norm, hooked.norm, rel_tol=1e-4, abs_tol=1e-30):
        return row
    return (replace(stats, norm=hooked.norm),)  # the hook's norm: a gradient's norm reads the same everywhere


def _holds(grad: Any, total: torch.Tensor) -> bool:
    """Does a leaf's ``.grad`` (``grad``) hold exactly ``total``, value for value? Its last backward
    added what reached the leaf to a ``.grad`` that was None: the same tensor when nothing changed it
    (two consumers' gradients add up the same in either order; more may not, and then: no)."""
    if not isinstance(grad, torch.Tensor) or type(grad) is not type(total):
        return False
    if (grad.layout, total.layout) != (torch.strided, torch.strided) or grad.shape != total.shape:
        return False
    try:
        return (grad.dtype, grad.device) == (total.dtype, total.device) and torch.equal(grad, total)
    except Exception:  # a tensor torch.equal cannot compare (a subclass's, a functorch one): unknown
        return False
