"""The Debugger's status in live mode: a shown step whose backward raised (:meth:`LiveStatus._live_failed`),
and a live debugger replaced by a newer one of its model (:meth:`LiveStatus._mark_replaced`), which
stays replaced and says so whatever sets ``status`` or ``error`` later. Torch-free.

A replaced debugger follows no more steps (its session's hooks are off) but keeps what it showed:
inspecting its steps, and re-running its last one (a re-run replays the step it recorded, on the
parameters as they are now, through gradsight's own hooks; it puts no live hook back) still work.
Every path that writes ``status`` or ``error`` — a re-run starting (``""``) and ending (``"ready"``),
a click on a big graph's node re-running the step, a refused write from the view, a live step's
end — would otherwise take the "Replaced" banner away from a view that still follows nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets

from .runs import RerunError

if TYPE_CHECKING:
    from .graph import Graph
    from .runs import RunHistory


class LiveStatus(traitlets.HasTraits):
    """Mixed into :class:`~gradsight.widget.Debugger`, whose ``status`` and ``error`` these keep."""

    _replaced = ""  # why this live debugger follows no more steps ("": it was not replaced)

    if TYPE_CHECKING:  # the Debugger's state this uses
        graph: Graph
        status: str
        error: str
        history: list[dict[str, Any]]
        current: int
        _runs: RunHistory
        _target: Any

    def _mark_replaced(self, text: str) -> None:
        """A newer live debugger follows this one's model (its session is closed): say so in ``error``,
        with status ``"error"``, from now on (a later error is shown under ``text``)."""
        self._replaced = text
        self.status, self.error = "error", text

    @traitlets.validate("status", "error")
    def _keep_replaced(self, proposal: dict[str, Any]) -> Any:
        # (a validator, not an observer: the view is sent the value kept, never a "ready" in between)
        text, value = self._replaced, proposal["value"]
        if not text or not isinstance(value, str):
            return value
        if proposal["trait"].name == "status":
            return "error" if value == "ready" else value  # "running" shows while a re-run runs
        return value if value.startswith(text) else f"{text}\n\n{value}" if value else text

    def _rerun_stopped(self, e: BaseException) -> tuple[str, str]:
        """Status and error after a re-run that raised ``e``. A :class:`RerunError` (nothing to re-run,
        toggles naming what is gone) leaves the view ready, its reply saying why; a replaced debugger's
        status stays ``"error"``, so the view reads the error banner: the message goes there."""
        if isinstance(e, RerunError):
            return ("error", str(e)) if self._replaced else ("ready", "")
        return "error", f"the re-run stopped: {type(e).__name__}: {e}"

    def _live_failed(self, error: str | None) -> None:
        """A live step was shown: its backward raised ``error`` (status error), or it finished. A failed
        step's graph is finished again with its error, so its missing gradients say the backward raised
        before reaching them (not that it asked for other tensors), and ``why()`` answers so."""
        if error is not None:
            record = self._runs.last
            if record is not None and record.error is None and self._target is not None:
                from ._capture.explain import finish

                inside = record.facts.in_checkpoint if record.facts is not None else {}
                record.error = error
                record.graph = finish(self._target, record.graph, record.toggles, error, inside)
                self.history = self._runs.to_wire()
                if self.current == record.index:
                    self.graph = record.graph
            self.status, self.error = "error", error
        elif self.status == "error":
            self.status, self.error = "ready", ""
