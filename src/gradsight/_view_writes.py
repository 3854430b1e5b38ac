"""The Debugger's guard on writes from the view (DESIGN §7: malformed or stale values from the front
end are answered with an ``error`` and change nothing).

Front-end writes arrive through ``set_state``, where validators see the new value already in place;
so bad values are reverted in observers, which know the old one (a wrong type is refused by a
validator, before it is in place). Python-owned traits are refused outright; Python's own writes to
the view's traits (:meth:`ViewWrites._write`) are not checked. Torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import traitlets

from .runs import RerunError
from .toggles import ToggleError, Toggles, make_toggles

if TYPE_CHECKING:
    from .graph import Graph
    from .runs import RunHistory, RunRecord

DIRECTIONS = ("TB", "BT", "LR", "RL")
NO_PENDING: dict[str, Any] = Toggles().to_wire()
# Traits only Python writes; the view reads them.
PYTHON_OWNED = ("status", "error", "history", "diff")
RUN_INDICES = ("current", "baseline")  # ints; traitlets' Int takes a bool too


class ViewWrites(traitlets.HasTraits):
    """Mixed into :class:`~gradsight.widget.Debugger`, whose traits these observers check."""

    _reverting = False  # Python writes this value itself (or puts back a refused one): do not check it

    if TYPE_CHECKING:  # the Debugger's traits and methods these observers use
        graph: Graph
        selected: str
        error: str
        options: dict[str, Any]
        pending: dict[str, Any]
        current: int
        baseline: int
        _runs: RunHistory
        _closed: bool

        def _nameable(self) -> dict[str, Any]: ...
        def _display(self, record: RunRecord) -> None: ...
        def _update_diff(self) -> None: ...

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """A front-end write: Python-owned traits are refused, and a value of the wrong type (which
        traitlets would raise about out of the comm handler) is refused with an ``error``."""
        refused = [key for key in sync_data if key in PYTHON_OWNED]
        for key, value in sync_data.items():
            if key in PYTHON_OWNED:
                continue
            if key in RUN_INDICES and isinstance(value, bool):  # equal to 1 or 0, so no validator would see it
                refused.append(key)
                continue
            try:
                super().set_state({key: value})  # type: ignore[misc]  # ipywidgets.Widget.set_state, next in the MRO
            except traitlets.TraitError:
                refused.append(key)
        if refused:
            self.error = f"the view sent {', '.join(refused)}, which it may not set (or not to that value); ignored"
            # The view shows what it wrote (and ipywidgets echoed a refused value to other views before
            # checking it): send Python's values back.
            self.send_state(refused)  # type: ignore[attr-defined]

    def _write(self, name: str, value: Any) -> None:
        """Python's own write, or a refused value put back: not checked as a view write (the run's own
        toggles, against the new graph; an old value that may be invalid now too, after close())."""
        self._reverting = True
        try:
            setattr(self, name, value)
        finally:
            self._reverting = False

    @traitlets.observe("selected")
    def _check_selected(self, change: dict[str, Any]) -> None:
        value = change["new"]
        if value and value not in self.graph:
            self.error = f"no node {value!r} in this graph (a stale selection?); selection unchanged"
            self.selected = change["old"] if change["old"] in self.graph else ""

    @traitlets.observe("options")
    def _check_options(self, change: dict[str, Any]) -> None:
        value = change["new"]
        if not isinstance(value, dict) or value.get("direction", "TB") not in DIRECTIONS:
            self.error = f"options.direction must be one of {', '.join(DIRECTIONS)}; options unchanged"
            self.options = change["old"]

    @traitlets.validate(*RUN_INDICES)
    def _run_index(self, proposal: dict[str, Any]) -> Any:
        # traitlets' Int takes True for 1: the run looked up by ==, and the bool synced back to the view
        if isinstance(proposal["value"], bool):
            raise traitlets.TraitError(f"{proposal['trait'].name} must be a run's index (an int), not a bool")
        return proposal["value"]

    @traitlets.observe("pending")
    def _check_pending(self, change: dict[str, Any]) -> None:
        if self._reverting:
            return
        value = change["new"]
        if self._closed:
            self.error = "this debugger is closed: toggles cannot be set; create a new one with gradsight.debugger(...)"
            self._write("pending", change["old"])
            return
        try:
            if not isinstance(value, dict) or set(value) - set(NO_PENDING):
                raise ToggleError(f"pending toggles must be a dict with keys {', '.join(NO_PENDING)}")
            make_toggles(**value, **self._nameable())
        except (ToggleError, TypeError, RerunError) as e:  # RerunError: a lazy layer appended since
            self.error = f"toggles not accepted: {e}"
            self._write("pending", change["old"])

    @traitlets.observe("current")
    def _switch_run(self, change: dict[str, Any]) -> None:
        if self._reverting:
            return
        record = self._runs.get(change["new"])
        if record is None:
            closed = " (the debugger is closed)" if self._closed else ""
            self.error = f"no run {change['new']} in the history{closed}; showing run {change['old']}"
            self._write("current", change["old"])
            return
        if record.graph is not self.graph:
            self._display(record)

    @traitlets.observe("baseline")
    def _compare(self, change: dict[str, Any]) -> None:
        if self._reverting:
            return
        if change["new"] != -1 and self._runs.get(change["new"]) is None:
            self.error = f"no run {change['new']} in the history to compare with"
            self._write("baseline", change["old"])
            return
        self._update_diff()

    @traitlets.observe("graph")
    def _keep_selection(self, change: dict[str, Any]) -> None:
        if self.selected and self.selected not in change["new"]:
            self.selected = ""
