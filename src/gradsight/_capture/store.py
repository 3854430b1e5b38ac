"""Tensors kept for lazy inspection, within a memory budget.

Statistics inside every hook cost 3–13× the backward; keeping references costs 1.04–1.8×
(research/autograd-facts.md §5.3). So gradsight keeps references and computes statistics when the
user clicks, up to a budget of bytes (unique storages, so views are not counted twice). Past the
budget it summarizes the tensor at once and keeps only the summary; the graph says so.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch

from ..graph import TensorSummary
from .summary import meta_of, norm_of, summarize

_STRIDED = torch.strided
_is_functorch_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_is_batched = torch._C._functorch.is_batchedtensor

Key = tuple[int, str]  # (node index in the walk, tensor key such as "saved:_saved_self")

# Small captures (the seed's examples, a tutorial's model) get full statistics at once, so that
# ``dbg.graph`` carries min/max/mean/std without an inspect: graphs of up to EAGER_NODES nodes, for
# their first tensors up to these totals, a few milliseconds at most. Bigger graphs get none (not
# statistics for an arbitrary first few), and past the totals statistics wait for the click. 64, not
# 128: a CIFAR ResNet of 8 blocks (114 nodes) paid ~8 ms of a ~280 ms step (3%) for statistics of
# 128 tensors nobody had asked for; the seed's graphs have under 20 nodes, tutorial models under 64.
EAGER_NODES = 64
EAGER_ELEMENTS = 1 << 18
EAGER_TENSORS = 128


class TensorStore:
    """``offer`` a tensor: kept (summary without statistics) or, past the budget, summarized now."""

    def __init__(self, budget_bytes: int, *, eager: bool = True) -> None:
        self.budget_bytes = budget_bytes
        self._eager = eager  # False: a live step's store, whose leaves get their .grad after the step
        self._eager_elements = EAGER_ELEMENTS if eager else 0
        self._eager_tensors = EAGER_TENSORS if eager else 0
        self.kept_bytes = 0
        self.dropped = 0
        self.evicted = False  # released for a newer run of the same debugger (runs.RunHistory)
        self._over: set[Key] = set()  # offered past the budget: summarized, not kept
        self._other_bytes = 0  # kept bytes not in a strided storage (sparse tensors)
        self._tensors: dict[Key, torch.Tensor] = {}
        self._versions: dict[Key, int] = {}  # version counters when kept: in-place changes since show
        self._storages: dict[int, int] = {}  # storage data_ptr -> bytes already counted
        self._users: dict[int, int] = {}  # storage data_ptr -> kept tensors in it
        self._placed: dict[Key, tuple[int | None, int]] = {}  # key -> (storage data_ptr, bytes) when kept
        self._released: set[Key] = set()  # kept until evict() released them
        self._leaves: dict[int, tuple[weakref.ref[torch.Tensor], int]] = {}  # and its version when backward ran
        self._stats: dict[Key, TensorSummary] = {}  # summaries offer() took statistics for, by key

    def offer(self, key: Key, t: torch.Tensor, *, freed: bool = False, eager: bool = True,
              version: int | None = None) -> TensorSummary:  # fmt: skip
        """Keep ``t`` under ``key``; its summary has statistics when it is small enough to take them
        now (see :data:`EAGER_ELEMENTS`) or when the budget is full (then it is not kept) — never
        inside a backward hook (``eager=False``). ``version``: ``t._version`` when it was read, if earlier."""
        if key in self._tensors:  # a later backward pass over a live step's graph: the last counts
            self._forget(key)
        self._stats.pop(key, None)
        if transformed(t):  # a functorch transform's tensor (vmap, is_grads_batched): no storage to count or keep
            return meta_of(t)
        try:
            cost, ptr = self._cost(t)
        except (RuntimeError, NotImplementedError):  # a storage that cannot be read (a dead functorch wrapper)
            return meta_of(t)
        if self.kept_bytes + cost > self.budget_bytes:
            self.dropped += 1
            self._over.add(key)
            # Statistics now, as it will not be kept; but never inside a backward hook (eager=False:
            # 3-13x the backward): there the hook's norm is all the summary gets.
            return summarize(t, stats=eager, freed=freed)
        self._keep(key, t, cost, ptr)
        if version is not None:  # read earlier (before a backward freed it): its version then
            self._versions[key] = version
        if eager and self.take_eager(t):
            summary = self._stats[key] = summarize(t, stats=True, freed=freed)
            return summary
        return summarize(t, stats=False, freed=True) if freed else meta_of(t)

    def stats_of(self, key: Key) -> TensorSummary | None:
        """The summary with statistics :meth:`offer` gave ``key`` (a small capture's), or None: a cell's
        walk offers the saved tensors its spy read before backward freed them, and keeps the spy's
        summary (no statistics) in the graph."""
        return self._stats.get(key)

    def describe(self, t: torch.Tensor) -> TensorSummary:
        """A summary of ``t`` without keeping it (a leaf's ``.grad``): with statistics while the eager
        allowance lasts, else with its norm (one kernel; every statistic when it is not finite). A live
        step's store takes none: the step replaces each leaf's ``.grad`` summary once its backward ran."""
        if self.take_eager(t):
            return summarize(t, stats=True)
        if not self._eager:
            return meta_of(t)
        norm = norm_of(t)
        if norm is None or not math.isfinite(norm):
            return summarize(t, stats=norm is not None)
        return meta_of(t).with_norm(norm)

    def take_eager(self, t: torch.Tensor) -> bool:
        """Spend the eager-statistics allowance on ``t`` if it fits."""
        n = t.numel()
        if self._eager_tensors <= 0 or n > self._eager_elements:
            return False
        self._eager_tensors -= 1
        self._eager_elements -= n
        return True

    def graph_size(self, nodes: int) -> None:
        """The capture's graph has ``nodes`` nodes: past :data:`EAGER_NODES` no eager statistics."""
        if nodes > EAGER_NODES:
            self._eager_tensors = 0

    def offer_leaf(self, index: int, t: torch.Tensor, version: int | None = None) -> None:
        """The leaf tensor itself, weakly: the user owns it, gradsight must not keep it alive. And its
        version counter: ``version`` when read earlier (a cell's, just before its backward), else now."""
        self._leaves[index] = (weakref.ref(t), _version(t) if version is None else version)

    def get(self, key: Key) -> torch.Tensor | None:
        return self._tensors.get(key)

    def changed(self, key: Key) -> bool:
        """Was the tensor kept under ``key`` modified in place since (an optimizer step on a weight
        autograd saved)? Its values are then not the ones autograd saved."""
        t = self._tensors.get(key)
        return t is not None and _version(t) != self._versions.get(key, _version(t))

    def over_budget(self, key: Key) -> bool:
        """Was the tensor under ``key`` offered past the budget (summarized, not kept)?"""
        return key in self._over

    def leaf(self, index: int) -> torch.Tensor | None:
        held = self._leaves.get(index)
        return None if held is None else held[0]()

    def leaf_changed(self, index: int) -> bool:
        """Was the leaf of node ``index`` modified in place since its backward (an optimizer step)? Its
        values now are then not the ones that backward used."""
        held = self._leaves.get(index)
        t = None if held is None else held[0]()
        return t is not None and held is not None and _version(t) != held[1]

    def keep_only(self, indices: set[int]) -> None:
        """Drop every kept tensor except those of the nodes in ``indices`` (they are re-counted)."""
        kept = {k: t for k, t in self._tensors.items() if k[0] in indices}
        self._tensors.clear()
        self._storages.clear()
        self._users.clear()
        self._placed.clear()
        self.kept_bytes = self._other_bytes = 0
        versions, self._versions = self._versions, {}
        for key, t in kept.items():
            self._keep(key, t, *self._cost(t))
            self._versions[key] = versions.get(key, _version(t))

    def release(self) -> None:
        """Drop every reference (the next run replaces this store)."""
        self._tensors.clear()
        self._versions.clear()
        self._storages.clear()
        self._users.clear()
        self._placed.clear()
        self._leaves.clear()
        self.kept_bytes = self._other_bytes = 0

    def evict(self) -> None:
        """Release the kept tensors so that a newer run fits the debugger's budget; the leaves (weak
        references, no memory) stay, so the inspector still shows a leaf's value and ``.grad``."""
        leaves, kept = dict(self._leaves), set(self._tensors)
        self.release()
        self._leaves.update(leaves)
        self._released = kept
        self.evicted = True

    def was_released(self, key: Key) -> bool:
        """Was the tensor under ``key`` kept until :meth:`evict` released it (not: never kept)?"""
        return key in self._released

    def held(self) -> tuple[dict[int, int], int]:
        """What the kept tensors hold: bytes per strided storage (by address, so that stores of
        several runs sharing a storage — a weight autograd saved in each — count it once), and the
        bytes of the others."""
        return self._storages, self._other_bytes

    def __len__(self) -> int:
        return len(self._tensors)

    def _keep(self, key: Key, t: torch.Tensor, cost: int, ptr: int | None) -> None:
        # A storage is counted once it is kept, and only then: a kept tensor keeps its storage alive,
        # so a later tensor at the same address shares it. (Counting dropped ones made the allocator's
        # reuse of their freed memory look free: kept bytes under-reported, the budget overrun.)
        if ptr is not None:
            self._users[ptr] = self._users.get(ptr, 0) + 1
            if cost:
                self._storages[ptr] = cost
        else:
            self._other_bytes += cost
        self._placed[key] = (ptr, cost)
        self.kept_bytes += cost
        self._tensors[key] = t
        self._versions[key] = _version(t)

    def _forget(self, key: Key) -> None:
        """Stop keeping the tensor under ``key``; its storage's bytes go once no kept tensor uses it."""
        # By where it was kept, not where its storage is now: a storage resized since (FSDP frees
        # parameters' with resize_(0)) would leave its bytes counted, and its address looking free.
        del self._tensors[key]
        self._versions.pop(key, None)
        ptr, cost = self._placed.pop(key, (None, 0))
        if ptr is None:
            self._other_bytes -= cost
            self.kept_bytes -= cost
            return
        users = self._users.get(ptr, 0) - 1
        if users > 0:
            self._users[ptr] = users
            return
        self._users.pop(ptr, None)
        self.kept_bytes -= self._storages.pop(ptr, 0)

    def _cost(self, t: torch.Tensor) -> tuple[int, int | None]:
        """Bytes keeping ``t`` would add, and its storage's address (None: not a strided storage)."""
        if t.is_meta:
            return 0, None
        if t.layout is not _STRIDED:
            return _sparse_bytes(t), None
        storage: Any = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self._storages:
            return 0, ptr
        return int(storage.nbytes()), ptr


def _sparse_bytes(t: torch.Tensor) -> int:
    """What a sparse tensor holds: its values and its indices (COO: nnz × ndim indices; CSR/CSC
    and their blocked forms: compressed and plain indices), not its dense size."""
    if t.layout == torch.sparse_coo:
        return int(t._values().nbytes) + int(t._indices().nbytes)
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return int(t.values().nbytes) + int(t.crow_indices().nbytes) + int(t.col_indices().nbytes)
    if t.layout in (torch.sparse_csc, torch.sparse_bsc):
        return int(t.values().nbytes) + int(t.ccol_indices().nbytes) + int(t.row_indices().nbytes)
    return t.numel() * t.element_size()


def transformed(t: torch.Tensor) -> bool:
    """A functorch transform's tensor (``vmap``'s batched tensors, ``grad``/``jacrev``'s wrappers):
    its storage cannot be read, and its values mean nothing outside the transform."""
    try:
        return bool(_is_batched(t) or _is_functorch_wrapped(t))
    except Exception:
        return False


def _version(t: torch.Tensor) -> int:
    """``t._version``; inference tensors have no version counter (reading it raises)."""
    return -1 if t.is_inference() else t._version
