"""The Debugger's second look at a node of a big graph: big graphs keep shapes and gradient norms
only, and a click on a node re-runs the step (same toggles) to keep that node's tensors, checking
that the re-run reproduced the run shown (:meth:`KeptValues._keep_tensors_of`). Torch-free.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .runs import not_reproduced

if TYPE_CHECKING:
    from .graph import Graph
    from .runs import RunHistory


class KeptValues:
    """Mixed into :class:`~gradsight.widget.Debugger`."""

    if TYPE_CHECKING:  # the Debugger's state this uses
        graph: Graph
        status: str
        current: int
        _captured: Any
        _target: Any
        _runs: RunHistory
        _watch: set[str]
        _closed: bool

    def _keep_tensors_of(self, node_id: str) -> str | None:
        """Big graphs keep shapes and gradient norms only: re-run the step (same toggles) to keep
        this node's tensors. Returns why the values stay unavailable, or None."""
        captured, record = self._captured, self._runs.get(self.current)
        if captured is None or record is None or captured.has_tensors(node_id):
            return None
        if not hasattr(self._target, "spec"):
            return None
        if record.facts is not None and "parameters" in self._target.changed(record.facts):
            return (
                "values not kept, and the model's parameters changed since this run (an optimizer step?), so "
                "re-running would not reproduce them: re-run (the new run keeps them), or create the debugger again"
            )
        self.status = "running"
        try:
            result = self._target.rerun(record.toggles, self._watch | {node_id})
        finally:
            self.status = "ready"
        if self._closed:
            drop(result.captured)
            return "the debugger was closed while re-running the step for these values"
        if result.captured is None or result.error is not None or node_id not in result.captured.graph:
            return f"values not kept; re-running the step to get them failed: {result.error or 'graph changed'}"
        old, new = record.captured, result.captured
        differs = not_reproduced(record.graph, new.graph)
        if differs is not None:  # the inputs, or something the step reads, changed since: not this run
            drop(new)
            return (
                f"values not kept, and re-running the step did not reproduce this run ({differs}): its inputs or "
                "something it reads changed since; create the debugger again to see the step as it is now"
            )
        from ._capture.inspect import as_shown  # (torch: imported once a big graph's node is inspected)

        self._watch.add(node_id)
        shown = record.graph
        # Same run, same numbers, now with this node's tensors: keep the record's index and what-if info.
        record.graph = new.graph = replace(
            new.graph, run=replace(new.graph.run, index=record.index, toggles=record.graph.run.toggles),
            controls=record.graph.controls, missing=record.graph.missing,
        )  # fmt: skip
        record.captured = self._captured = new
        if old is not None and old.store is not None:
            old.store.release()
        self._runs.fit_budget(record)  # the new store's tensors count against the debugger's budget
        self.graph = record.graph = as_shown(shown, new)  # made again to keep them: the norms shown stay
        return None


def drop(captured: Any) -> None:
    """Release the tensors of a capture that will not be shown."""
    store = getattr(captured, "store", None)
    if store is not None:
        store.release()
