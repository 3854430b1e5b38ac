"""``Debugger``: the anywidget that shows a graph, answers the view's requests and re-runs what-ifs.

Traits hold state: ``graph``, ``selected``, ``status``, ``error``, ``options``, the view's
``pending`` toggles, the run ``history`` with the ``current`` and ``baseline`` runs and their
``diff``. The view only sends small values back (an id, toggles, a run index) and small requests
(see ``_requests.py``). Malformed values from the front end are reverted with an ``error`` and
change nothing (DESIGN §7). This module is torch-free: tensor work happens in ``_capture``.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import replace
from typing import Any

import anywidget
import traitlets

from ._kept_values import KeptValues, drop
from ._live_status import LiveStatus
from ._node_ids import check_node_id
from ._requests import RequestError, answer
from ._view_writes import NO_PENDING, ViewWrites
from .graph import Graph, Why
from .inspection import Inspection
from .runs import RerunError, RunHistory, RunRecord, again_label, changed_note, differ
from .schema import diff_to_wire, graph_to_wire, graph_transport
from .toggles import ToggleError, Toggles, make_toggles

STATIC = pathlib.Path(__file__).parent / "static"


def _asset(path: pathlib.Path) -> pathlib.Path | str:
    """The file's text; its path only for hot reloading (``ANYWIDGET_HMR=1``, ``npm run dev``). For a
    path anywidget connects every instance to the file's change signal with a strong reference
    (manzt/anywidget#929): no Debugger was ever freed, with the tensors it kept (+8 MiB each in a
    loop of 50 `gs.debugger` calls on a small model)."""
    return path if os.environ.get("ANYWIDGET_HMR") else path.read_text(encoding="utf-8")


def _esm() -> pathlib.Path | str:
    path = STATIC / "widget.js"
    if path.is_file():
        return _asset(path)
    # Say so in the notebook instead of failing with an unreadable front-end error.
    return (
        "export default { render({ el }) { el.textContent = 'gradsight: the view is not built "
        "(src/gradsight/static/widget.js is missing). Run `make demo`, or `npm install && npm run "
        "build` in the gradsight checkout, then restart the kernel.'; } };\n"
    )


def _graph_to_json(graph: Graph, _widget: object) -> dict[str, Any]:
    return graph_transport(graph_to_wire(graph))


def _graph_from_json(_value: object, widget: Debugger) -> Graph:
    # The view never owns the graph: a front-end write is refused and leaves the graph as it is.
    widget.error = "the view tried to replace the graph; ignored"
    return widget.graph


class Debugger(LiveStatus, ViewWrites, KeptValues, anywidget.AnyWidget):
    """An interactive view of a backward graph. Create one with :func:`gradsight.debugger`.

    >>> import torch, gradsight
    >>> x = torch.ones(3, requires_grad=True)
    >>> dbg = gradsight.debugger((x * 2).sum())
    >>> dbg.select(dbg.graph.find("MulBackward0")[0].id); dbg.selected
    'MulBackward0#0'
    """

    _esm = _esm()
    _css = _asset(STATIC / "widget.css") if (STATIC / "widget.css").is_file() else ""

    graph = traitlets.Instance(Graph, args=()).tag(sync=True, to_json=_graph_to_json, from_json=_graph_from_json)
    selected = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("ready").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    options = traitlets.Dict({"direction": "TB"}).tag(sync=True)
    pending = traitlets.Dict(NO_PENDING).tag(sync=True)  # toggles set in the view, not applied yet
    history: traitlets.List[dict[str, Any]] = traitlets.List(traitlets.Dict(), []).tag(sync=True)
    current = traitlets.Int(0).tag(sync=True)  # run shown
    baseline = traitlets.Int(-1).tag(sync=True)  # run compared against (-1: none)
    diff = traitlets.Dict(default_value=None, allow_none=True).tag(sync=True)  # None: nothing to compare

    def __init__(self, graph: Graph | None = None, **kwargs: Any) -> None:
        super().__init__(graph=graph if graph is not None else Graph(), **kwargs)
        self._captured: Any = None  # _capture.walk.Captured of the run shown: kept tensors for inspection
        self._target: Any = None  # _capture.targets.Target: what a re-run runs
        self._live: Any = None  # _capture.live.LiveSession in live mode
        self._runs = RunHistory()
        self._watch: set[str] = set()  # nodes whose tensors re-runs keep (inspected so far)
        self._running = False
        self._closed = False
        self.on_msg(self._on_msg)

    # -- public ----------------------------------------------------------------------------------

    def select(self, node_id: str) -> None:
        """Select a node as a click in the view does (``""`` clears the selection)."""
        if node_id is None:
            raise TypeError('dbg.select takes a node id (a str; "" clears the selection), not None')
        if node_id and node_id not in self.graph:
            raise KeyError(f"no node {node_id!r} in this graph; ids are listed by [n.id for n in dbg.graph.nodes]")
        self.selected = node_id

    def inspect(self, node_id: str) -> Inspection:
        """What the inspector shows for ``node_id``: full statistics, histograms and value previews
        of its saved tensors, its gradients and (for a leaf) the tensor and its ``.grad``."""
        from ._capture.inspect import inspect_node, not_kept_note
        from ._capture.records import Captured
        from ._capture.why import needs_explaining

        self._check_open("inspect")
        check_node_id(self.graph, node_id)  # a KeyError or TypeError that says which id to pass
        missing = self._keep_tensors_of(node_id)
        captured = self._captured if self._captured is not None else Captured(self.graph)
        node = self.graph.node(node_id)
        history: tuple[Any, ...] = ()
        if self._live is not None and node.leaf is not None and node.leaf.name:
            history = tuple(self._live.history.get(node.leaf.name, ()))
        result = inspect_node(captured, node_id, history, missing or not_kept_note(self.graph.run.mode))
        if node.leaf is not None and node.leaf.name and needs_explaining(node):
            result = replace(result, why=self.why(node.leaf.name))
        return result

    def rerun(self, requires_grad: dict[str, bool] | None = None, no_grad: bool | list[str] = False,
              inference_mode: bool | list[str] = False, detach: str | list[str] | tuple[str, ...] = (),
              apply: bool = False) -> Graph:  # fmt: skip
        """Re-run with what-if toggles and return the new graph (also shown, with a diff against the
        run shown before: ``dbg.current``, any run of ``dbg.history``).

        ``requires_grad`` maps leaves (a tied weight under any of its paths) or module paths to a flag;
        ``no_grad`` / ``inference_mode`` are ``True`` (whole step) or module paths; ``detach`` lists module
        paths (or a cell's tensor variables; one may be given as a str).
        The user's objects are restored afterwards unless ``apply=True`` (requires_grad changes stay).
        When the parameters or inputs changed since the run shown (an optimizer step), that run is
        made again on them first, and the diff compares with it: the toggles alone; both graphs say so.
        Raises :class:`RerunError` when there is nothing to re-run or the code raised (the previous
        graph stays shown, with the traceback).
        """
        self._check_open("rerun")
        self._check_rerunnable()  # before the toggles: a tensor's graph knows no parameter to name
        try:
            toggles = make_toggles(requires_grad=requires_grad, no_grad=no_grad, inference_mode=inference_mode,
                                   detach=detach, apply=apply, **self._nameable())  # fmt: skip
        except ToggleError:
            not_a_tensor = getattr(self._target, "not_a_tensor", None)  # a cell's `k = 3`: say so
            # detach="k" names one variable; detach=True is refused by make_toggles, in its own words
            cut: Any = detach  # any value from Python: make_toggles said what it takes
            detached = [cut] if isinstance(cut, str) else cut if isinstance(cut, (list, tuple, set, frozenset)) else ()
            named = [*(requires_grad if isinstance(requires_grad, dict) else ()), *detached]
            why = not_a_tensor([n for n in named if isinstance(n, str)]) if not_a_tensor is not None else None
            if why is not None:
                raise ToggleError(why) from None
            raise
        return self._rerun(toggles)

    def _nameable(self) -> dict[str, Any]:
        """What toggles may name, as :func:`make_toggles` takes it: the leaves, modules and variables
        of what a re-run runs now — a layer appended or a parameter replaced since the run shown is
        named at once, not after one more re-run (the target's controls; the graph's without one) —
        and the run shown's leaves; the nodes of the run shown and of the runs in the history; the other
        paths of shared parameters (tied weights) → the leaf name each is shown under. Raises
        :class:`RerunError` when the model cannot run now (a lazy layer appended)."""
        graph = self.graph
        controls = self._target.controls(graph) if self._target is not None else graph.controls
        in_graph = [n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name]
        # a node a cut removed stays nameable (a re-run whose graph lacks it refuses it, changing nothing)
        graphs = [graph, *(r.graph for r in reversed(self._runs.records))]
        nodes = list(
            dict.fromkeys(n.id for g in graphs if g.controls.detach_nodes for n in g.nodes if n.kind != "leaf")
        )
        return {"leaves": [*(leaf.name for leaf in controls.leaves), *in_graph], "modules": controls.modules,
                "variables": controls.variables, "nodes": nodes,
                "aliases": dict(self._target.aliases()) if self._target is not None else {}}  # fmt: skip

    def why(self, leaf: str) -> Why:
        """Why ``leaf`` (a parameter or input name) got no gradient, or a zero one, in the run shown."""
        from ._capture.explain import explain
        from ._capture.targets import TensorTarget
        from ._capture.why_kept import with_kept_stats

        if not isinstance(leaf, str):
            raise TypeError(
                f"why() takes one leaf name as a str, e.g. dbg.why('layer1.weight'); got {type(leaf).__name__}"
                " (ask once per name; dbg.graph.missing lists every leaf without a gradient)"
            )

        record = self._runs.get(self.current)
        toggles = record.toggles if record is not None else Toggles()
        failure = record.error if record is not None else (self.error or None)  # a first run that raised
        inside = record.facts.in_checkpoint if record is not None and record.facts is not None else {}
        earlier = [r.graph for r in reversed(self._runs.records) if r.index < self.current]
        graph = with_kept_stats(self.graph, self._captured)  # a live step's kept tensors: where NaN/Inf start
        return explain(self._target or TensorTarget({}), graph, toggles, leaf, failure, inside, earlier)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "a gradsight Debugger cannot be pickled: it holds the run's tensors, hooks and the view's comm; "
            "pickle dbg.graph instead (plain, torch-free data)"
        )

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(
                f"this debugger is closed (its tensors are dropped and its hooks removed), so it cannot {what}: "
                "create a new one with gradsight.debugger(...); dbg.graph still holds the last graph"
            )

    def close(self) -> None:
        """Remove every hook gradsight installed and drop the tensors it kept; close the view."""
        self._closed = True
        if self._live is not None:
            self._live.close()
            self._live = None
        self._runs.release()
        self._captured = None
        self._target = None  # a runnable target's call holds the model and the batch
        layout = self._trait_values.get("layout")  # ipywidgets' Layout child: a widget and comm of its own
        if layout is not None:
            layout.close()
        super().close()

    # -- runs --------------------------------------------------------------------------------------

    def _start(self, target: Any, captured: Any, error: str | None = None) -> None:
        """Show the first run of ``target``."""
        self._target = target
        if captured is not None:
            self._add(captured, Toggles(), error)
        if error is not None:
            self.status, self.error = "error", error

    def _show(self, captured: Any) -> None:
        """Show a new run made elsewhere (a live step); from the thread that made the debugger only."""
        if self._closed:  # close() from another thread while this step was being published
            drop(captured)
            return
        self._add(captured, Toggles())

    def _add(self, captured: Any, toggles: Toggles, error: str | None = None, *, facts: Any = None,
             notes: tuple[str, ...] = (), again: str | None = None, baseline: int | None = None,
             show: bool = True, keep: tuple[int, ...] = ()) -> RunRecord:  # fmt: skip
        """Add a run to the history and show it (``show``), compared with ``baseline`` (default: the
        last run before it). ``facts``: what it ran on, if taken already (else now). ``keep``: runs a full
        history must not drop for it (the runs its diff and notes name)."""
        from ._capture.explain import finish

        previous = self._runs.last
        graph = captured.graph
        if self._target is not None:
            facts = facts if facts is not None else self._target.facts(graph)
            inside = facts.in_checkpoint if facts is not None else {}
            earlier = [r.graph for r in reversed(self._runs.records)]  # this run is not one yet
            graph = finish(self._target, graph, toggles, error, inside, earlier)
        if notes:
            graph = replace(graph, notes=(*graph.notes, *notes))
        record = self._runs.add(graph, captured, toggles, error, facts, again, keep=keep)
        if self._closed:  # close() on another thread meanwhile (a live step published as it closed)
            self._runs.release()
        self.history = self._runs.to_wire()
        if show:
            if baseline is None or self._runs.get(baseline) is None:
                baseline = previous.index if previous is not None else -1
            self.baseline = baseline
            self._display(record)
        return record

    def _display(self, record: RunRecord) -> None:
        self._captured = record.captured
        self.graph = record.graph
        if self.current != record.index:
            self.current = record.index
        self._update_diff()

    def _update_diff(self) -> None:
        wire = diff_to_wire(self._runs.diff(self.baseline, self.current)) if self.baseline >= 0 else None
        self.diff = wire  # type: ignore[assignment]  # allow_none=True

    def _rerun(self, toggles: Toggles) -> Graph:
        if self._running:
            raise RerunError("a re-run is already running; wait for it to finish")
        self._check_rerunnable()
        since = self._runs.get(self.current)  # the run shown: the re-run is compared with it
        self._running, self.status, self.error = True, "running", ""
        again: tuple[Any, Any] | None = None
        try:
            changed = self._target.changed(since.facts) if since is not None and since.facts is not None else ()
            if since is not None and changed and differ(since.toggles, toggles):
                again = self._again(since)
            if self._target is None:  # closed while the run shown was made again
                raise RerunError("the debugger was closed during the re-run; nothing was kept")
            result = self._target.rerun(toggles, self._watch)
        except BaseException as e:  # KeyboardInterrupt, or a bug of ours: never stay "running"
            drop(again[0] if again is not None else None)
            self.status, self.error = self._rerun_stopped(e)
            raise
        finally:
            self._running = False
        if self._closed or result.captured is None or result.error is not None:
            drop(result.captured)
            drop(again[0] if again is not None else None)
            if self._closed:  # the user's code, or the view, closed the debugger while it re-ran
                self.status = "ready"
                raise RerunError("the debugger was closed during the re-run; nothing was kept")
            self.status, self.error = "error", result.error or "the re-run produced no graph"
            raise RerunError(self.error)
        facts = self._target.facts(result.captured.graph)
        notes: tuple[str, ...] = ()
        baseline = since.index if since is not None else None
        if since is not None and changed:
            live, step = self._live is not None, facts.step if facts is not None else None
            if again is not None:  # the baseline: the run shown made again (the re-run's index is the next)
                note = changed_note(changed, since, live, now_step=step, after=self._runs.made + 1)
                baseline = self._add(again[0], since.toggles, facts=again[1], notes=(note,),
                                     again=again_label(since, changed, step), show=False,
                                     keep=(since.index,)).index  # fmt: skip
            notes = (changed_note(changed, since, live, now_step=step, again=baseline if again else None,
                                  toggled=differ(since.toggles, toggles)),)  # fmt: skip
        kept = tuple(i for i in (baseline, since.index if since is not None else None) if i is not None)
        record = self._add(result.captured, toggles, facts=facts, notes=notes, baseline=baseline, keep=kept)
        # The panel now shows this run's toggles; further edits are relative to them (Python's own
        # write: not checked as the view's, against this graph, where a detached node is gone).
        self.status = "ready"
        self._write("pending", toggles.to_wire())
        return record.graph

    def _check_rerunnable(self) -> None:
        from ._capture.targets import NO_RERUN, TensorTarget

        if self._target is None or isinstance(self._target, TensorTarget):
            raise RerunError(NO_RERUN)

    def _again(self, since: RunRecord) -> tuple[Any, Any] | None:
        """What ``since`` ran on changed (an optimizer step): make it again on what runs now, as the
        re-run's baseline, so the diff shows the toggles alone and not that change too. Its capture
        and facts, or None if it failed (the re-run is then compared with ``since``, and says so)."""
        made = None
        try:  # its toggles may name what is gone since (a module removed): then no baseline, not a failure
            made = self._target.rerun(replace(since.toggles, apply=False), self._watch)
            if made.captured is None or made.error is not None or self._target is None:
                drop(made.captured)
                return None
            return made.captured, self._target.facts(made.captured.graph)
        except Exception:
            drop(made.captured if made is not None else None)
            return None

    def _rerun_pending(self) -> Graph:
        p = self.pending
        return self.rerun(requires_grad=p.get("requires_grad") or None, no_grad=p.get("no_grad", False),
                          inference_mode=p.get("inference_mode", False), detach=p.get("detach", []),
                          apply=p.get("apply", False))  # fmt: skip

    # -- requests from the view ------------------------------------------------------------------

    def _on_msg(self, _widget: object, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        request_id = content.get("request_id") if isinstance(content, dict) else None
        if not isinstance(request_id, str) or len(request_id) > 400:
            request_id = ""
        reply_type = kind if isinstance(kind, str) and len(kind) < 40 else "error"
        if kind == "ping":  # the view checks that its comm still takes messages (js/connection.ts)
            self.send({"type": "ping", "request_id": request_id, "ok": True})
            return
        if self._closed:
            error = "this debugger is closed (its tensors are dropped): run the cell again for a new one"
            self.send({"type": reply_type, "request_id": request_id, "ok": False, "error": error})
            return
        try:
            body, buffers = answer(self, kind, content if isinstance(content, dict) else {})
        except (RequestError, RerunError, ToggleError, KeyError, LookupError, IndexError, ValueError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            self.send({"type": reply_type, "request_id": request_id, "ok": False, "error": str(message)})
            return
        except Exception as e:  # a bug of ours: say so in the view, keep the kernel working
            self.send({"type": reply_type, "request_id": request_id, "ok": False, "error": f"{type(e).__name__}: {e}"})
            return
        self.send({"type": reply_type, "request_id": request_id, "ok": True, **body}, buffers)

    def __repr__(self) -> str:
        g = self.graph
        return f"<gradsight.Debugger: {len(g)} nodes, roots {list(g.roots)}>"
