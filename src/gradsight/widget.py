"""``Debugger``: the anywidget that shows one graph and answers the view's requests.

Traits hold state (``graph``, ``selected``, ``status``, ``error``, ``options``); the view only
ever sends small values back (a node id, a direction) and small requests (``inspect`` a node, the
``values`` of another slice), answered by messages with binary buffers. Malformed values and
requests from the front end are answered with an error and change nothing (DESIGN §7).
This module is torch-free: tensor work happens in ``_capture``, imported when needed.
"""

from __future__ import annotations

import pathlib
from typing import Any

import anywidget
import traitlets

from .graph import Graph
from .inspection import Inspection
from .schema import graph_to_wire, inspection_to_wire, preview_to_wire

STATIC = pathlib.Path(__file__).parent / "static"
DIRECTIONS = ("TB", "BT", "LR", "RL")
_MAX_ID = 400  # longest request id / node id / key accepted from the view


def _esm() -> pathlib.Path | str:
    path = STATIC / "widget.js"
    if path.is_file():
        return path
    # Say so in the notebook instead of failing with an unreadable front-end error.
    return (
        "export default { render({ el }) { el.textContent = 'gradsight: the view is not built "
        "(src/gradsight/static/widget.js is missing). Run `make demo`, or `npm install && npm run "
        "build` in the gradsight checkout, then restart the kernel.'; } };\n"
    )


def _graph_to_json(graph: Graph, _widget: object) -> dict[str, Any]:
    return graph_to_wire(graph)


def _graph_from_json(_value: object, widget: Debugger) -> Graph:
    # The view never owns the graph: a front-end write is refused and leaves the graph as it is.
    widget.error = "the view tried to replace the graph; ignored"
    return widget.graph


class RequestError(ValueError):
    """A request from the view that cannot be answered; the reply carries the message."""


class Debugger(anywidget.AnyWidget):
    """An interactive view of a backward graph. Create one with :func:`gradsight.debugger`.

    >>> import torch, gradsight
    >>> x = torch.ones(3, requires_grad=True)
    >>> dbg = gradsight.debugger((x * 2).sum())
    >>> dbg.select(dbg.graph.find("MulBackward0")[0].id); dbg.selected
    'MulBackward0#0'
    """

    _esm = _esm()
    _css = STATIC / "widget.css" if (STATIC / "widget.css").is_file() else ""

    graph = traitlets.Instance(Graph, args=()).tag(sync=True, to_json=_graph_to_json, from_json=_graph_from_json)
    selected = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("ready").tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    options = traitlets.Dict({"direction": "TB"}).tag(sync=True)

    def __init__(self, graph: Graph | None = None, **kwargs: Any) -> None:
        super().__init__(graph=graph if graph is not None else Graph(), **kwargs)
        self._captured: Any = None  # _capture.walk.Captured of the graph shown: kept tensors for inspection
        self._live: Any = None  # _capture.live.LiveSession in live mode
        self._spec: Any = None  # _capture.run.RunSpec of a runnable debugger
        self._watch: set[str] = set()  # nodes whose gradients re-runs keep (inspected so far)
        self.on_msg(self._on_msg)

    # -- public ----------------------------------------------------------------------------------

    def select(self, node_id: str) -> None:
        """Select a node as a click in the view does (``""`` clears the selection)."""
        if node_id and node_id not in self.graph:
            raise KeyError(f"no node {node_id!r} in this graph; ids are listed by [n.id for n in dbg.graph.nodes]")
        self.selected = node_id

    def inspect(self, node_id: str) -> Inspection:
        """What the inspector shows for ``node_id``: full statistics, histograms and value previews
        of its saved tensors, its gradients and (for a leaf) the tensor and its ``.grad``."""
        from ._capture.inspect import GRADIENTS_NOT_KEPT, inspect_node
        from ._capture.walk import Captured

        if node_id not in self.graph:
            raise KeyError(f"no node {node_id!r} in this graph")
        missing = self._keep_gradients_of(node_id)
        captured = self._captured if self._captured is not None else Captured(self.graph)
        history: tuple[Any, ...] = ()
        node = self.graph.node(node_id)
        if self._live is not None and node.leaf is not None and node.leaf.name:
            history = tuple(self._live.history.get(node.leaf.name, ()))
        return inspect_node(captured, node_id, history, missing or GRADIENTS_NOT_KEPT)

    def _keep_gradients_of(self, node_id: str) -> str | None:
        """Big graphs keep shapes and gradient norms only: re-run the step to keep this node's
        tensors. Returns why the values stay unavailable, or None."""
        captured = self._captured
        if captured is None or captured.has_tensors(node_id):
            return None
        if self._spec is None:
            return None
        if self._spec.model_changed():
            return (
                "values not kept, and the model's parameters changed since this run (an optimizer step?), so "
                "re-running would not reproduce them: create the debugger again"
            )
        from ._capture.run import run

        self.status = "running"
        try:
            result = run(self._spec, watch=self._watch | {node_id})
        finally:
            self.status = "ready"
        if result.captured is None or result.error is not None or node_id not in result.captured.graph:
            return (
                f"gradient values not kept; re-running the step to get them failed: {result.error or 'graph changed'}"
            )
        self._watch.add(node_id)
        self._show(result.captured)
        return None

    def close(self) -> None:
        """Remove every hook gradsight installed and drop the tensors it kept; close the view."""
        if self._live is not None:
            self._live.close()
            self._live = None
        self._release()
        super().close()

    # -- updates from capture --------------------------------------------------------------------

    def _show(self, captured: Any) -> None:
        """Show a new capture (main thread only): the old one's tensors are released."""
        old, self._captured = self._captured, captured
        if old is not None and old is not captured and old.store is not None:
            old.store.release()
        self.graph = captured.graph

    def _release(self) -> None:
        if self._captured is not None and self._captured.store is not None:
            self._captured.store.release()
        self._captured = None

    # -- requests from the view ------------------------------------------------------------------

    def _on_msg(self, _widget: object, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        request_id = content.get("request_id") if isinstance(content, dict) else None
        if not isinstance(request_id, str) or len(request_id) > _MAX_ID:
            request_id = ""
        try:
            body, buffers = self._answer(kind, content)
        except (RequestError, KeyError, LookupError, IndexError, ValueError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            self.send({"type": kind if isinstance(kind, str) else "error", "request_id": request_id, "ok": False,
                       "error": str(message)})  # fmt: skip
            return
        except Exception as e:  # a bug of ours: say so in the view, keep the kernel working
            self.send({"type": kind, "request_id": request_id, "ok": False, "error": f"{type(e).__name__}: {e}"})
            return
        self.send({"type": kind, "request_id": request_id, "ok": True, **body}, buffers)

    def _answer(self, kind: object, content: Any) -> tuple[dict[str, Any], list[bytes]]:
        if kind == "inspect":
            node = _text(content, "node")
            return inspection_to_wire(self.inspect(node))
        if kind == "values":
            from ._capture.inspect import values_of
            from ._capture.walk import Captured

            node, key = _text(content, "node"), _text(content, "key")
            index = content.get("index")
            if not isinstance(index, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
                raise RequestError("values: index must be a list of integers")
            captured = self._captured if self._captured is not None else Captured(self.graph)
            if node not in self.graph:
                raise RequestError(f"no node {node!r} in this graph (a stale request?)")
            buffers: list[bytes] = []
            preview = preview_to_wire(values_of(captured, node, key, index), buffers)
            return {"node": node, "key": key, "preview": preview}, buffers
        raise RequestError(f"unknown request type {kind!r}; expected 'inspect' or 'values'")

    # -- validation of front-end writes ------------------------------------------------------------

    # Front-end writes arrive through set_state, where validators see the new value already in
    # place; so bad values are reverted in observers, which know the old one.
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

    @traitlets.observe("graph")
    def _keep_selection(self, change: dict[str, Any]) -> None:
        if self.selected and self.selected not in change["new"]:
            self.selected = ""

    def __repr__(self) -> str:
        g = self.graph
        return f"<gradsight.Debugger: {len(g)} nodes, roots {list(g.roots)}>"


def _text(content: dict[str, Any], key: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise RequestError(f"request field {key!r} must be a non-empty string")
    return value
