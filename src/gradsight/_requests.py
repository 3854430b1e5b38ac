"""Answers to the view's requests (messages with an id, a reply and an error path).

``inspect`` a node, the ``values`` of another slice, ``rerun`` with the pending toggles, ``why`` a
leaf got no gradient. Every request is validated; a bad one is answered with an error and changes
nothing. Torch is imported only when a request needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .schema import inspection_to_wire, node_to_wire, preview_to_wire, why_to_wire

if TYPE_CHECKING:
    from .widget import Debugger

MAX_TEXT = 400  # longest id / name / key accepted from the view


class RequestError(ValueError):
    """A request from the view that cannot be answered; the reply carries the message."""


def answer(dbg: Debugger, kind: object, content: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    if kind == "inspect":
        node = text(content, "node")
        body, buffers = inspection_to_wire(dbg.inspect(node))
        body["detail"] = node_to_wire(dbg.graph.node(node))  # the whole node: skeletons leave details out
        return body, buffers
    if kind == "values":
        return _values(dbg, content)
    if kind == "rerun":
        return _rerun(dbg, content)
    if kind == "why":
        return {"why": why_to_wire(dbg.why(text(content, "leaf")))}, []
    raise RequestError(f"unknown request type {kind!r}; expected inspect, values, rerun or why")


def _values(dbg: Debugger, content: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    from ._capture.inspect import values_of
    from ._capture.records import Captured

    node, key = text(content, "node"), text(content, "key")
    index = content.get("index")
    if not isinstance(index, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
        raise RequestError("values: index must be a list of integers")
    if node not in dbg.graph:
        raise RequestError(f"no node {node!r} in this graph (a stale request?)")
    captured = dbg._captured if dbg._captured is not None else Captured(dbg.graph)
    buffers: list[bytes] = []
    preview = preview_to_wire(values_of(captured, node, key, index), buffers)
    return {"node": node, "key": key, "preview": preview}, buffers


def _rerun(dbg: Debugger, content: dict[str, Any]) -> tuple[dict[str, Any], list[bytes]]:
    """Re-run with the pending toggles, from the run the view shows (``after_run``, any run of the
    history). A click made while the view showed another run than Python shows now is dropped: a
    re-run (or a live step) finished in between — a second click queued behind the first one."""
    after = content.get("after_run")
    shown = dbg.graph.run.index
    if not isinstance(after, int) or isinstance(after, bool):
        raise RequestError(f"rerun: after_run must be the index of the run the view shows ({shown})")
    if after != shown and not 0 <= after < dbg._runs.made:
        raise RequestError(f"rerun: after_run {after} is no run of this debugger; send the run shown ({shown})")
    if after != shown:
        raise RequestError(
            f"not re-running: you clicked Re-run on run {after}, and run {shown} is shown now (it already ran in "
            f"between, or was picked since) — a second click? Look at run {shown}, then re-run again if you want to."
        )
    graph = dbg._rerun_pending()
    return {"run": graph.run.index}, []


def text(content: dict[str, Any], key: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise RequestError(f"request field {key!r} must be a non-empty string")
    return value
