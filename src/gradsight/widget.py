"""``Debugger``: the anywidget that shows one graph and syncs selection and status with the view.

Traits hold state (``graph``, ``selected``, ``status``, ``error``, ``options``); the view only
ever sends small values back (a node id, a direction). Malformed values from the front end are
answered with an ``error`` and change nothing (DESIGN §7).
"""

from __future__ import annotations

import pathlib
from typing import Any

import anywidget
import traitlets

from .graph import Graph
from .schema import graph_to_wire

STATIC = pathlib.Path(__file__).parent / "static"
DIRECTIONS = ("TB", "BT", "LR", "RL")


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

    def select(self, node_id: str) -> None:
        """Select a node as a click in the view does (``""`` clears the selection)."""
        if node_id and node_id not in self.graph:
            raise KeyError(f"no node {node_id!r} in this graph; ids are listed by [n.id for n in dbg.graph.nodes]")
        self.selected = node_id

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
