"""The debugger's last runs: each graph with what produced it, bounded, and diffs between them.

Torch-free: a run's kept tensors travel as an opaque ``captured`` object owned by ``_capture``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .diff import GraphDiff, diff
from .graph import Graph
from .schema import number
from .toggles import Toggles

MAX_RUNS = 8


class RerunError(RuntimeError):
    """A re-run that cannot happen, or whose code raised (the message holds the traceback)."""


@dataclass
class RunRecord:
    index: int
    graph: Graph
    captured: Any  # _capture.walk.Captured (its store holds the run's tensors) or None
    toggles: Toggles
    error: str | None = None

    @property
    def label(self) -> str:
        mode = self.graph.run.mode
        if mode == "live":
            return f"step {self.graph.run.step}"
        return "first run" if self.index == 0 and self.toggles.empty else self.toggles.label


class RunHistory:
    """The last :data:`MAX_RUNS` runs; older ones are dropped and their tensors released.

    The memory budget is the debugger's, not each run's: a new run keeps tensors up to the budget,
    and older runs' tensors are released (oldest first) until all the runs together hold no more
    than it. Their graphs stay, with the norms and summaries taken at capture.
    """

    def __init__(self) -> None:
        self.records: list[RunRecord] = []
        self._next = 0

    def add(self, graph: Graph, captured: Any, toggles: Toggles, error: str | None = None) -> RunRecord:
        graph = replace(
            graph, run=replace(graph.run, index=self._next, toggles=None if toggles.empty else toggles.to_wire())
        )
        if captured is not None:
            captured.graph = graph
        record = RunRecord(self._next, graph, captured, toggles, error)
        self._next += 1
        self.records.append(record)
        while len(self.records) > MAX_RUNS:
            _release(self.records.pop(0))
        self.fit_budget(record)
        return record

    def fit_budget(self, keep: RunRecord) -> None:
        """Release older runs' tensors (oldest first, never ``keep``'s) until every run's kept
        tensors together fit the budget of ``keep``'s store."""
        ours = _store(keep)
        if ours is None:
            return
        stores = [s for r in self.records if r is not keep and (s := _store(r)) is not None and len(s) > 0]
        while stores and _held([*stores, ours]) > ours.budget_bytes:
            stores.pop(0).evict()

    def get(self, index: int) -> RunRecord | None:
        return next((r for r in self.records if r.index == index), None)

    @property
    def last(self) -> RunRecord | None:
        return self.records[-1] if self.records else None

    def diff(self, before: int, after: int) -> GraphDiff | None:
        a, b = self.get(before), self.get(after)
        if a is None or b is None or a is b:
            return None
        return diff(a.graph, b.graph, a.index, b.index)

    def to_wire(self) -> list[dict[str, Any]]:
        return [
            {
                "index": r.index,
                "label": r.label,
                "loss": number(r.graph.run.loss),
                "nodes": len(r.graph),
                "error": r.error,
            }
            for r in self.records
        ]

    def release(self) -> None:
        for r in self.records:
            _release(r)
        self.records.clear()


def _store(record: RunRecord) -> Any:
    return getattr(record.captured, "store", None)


def _release(record: RunRecord) -> None:
    store = _store(record)
    if store is not None:
        store.release()


def _held(stores: list[Any]) -> int:
    """Bytes the stores' kept tensors hold together, a storage shared by several counted once."""
    storages: dict[int, int] = {}
    other = 0
    for s in stores:
        shared, rest = s.held()
        storages.update(shared)
        other += rest
    return sum(storages.values()) + other
