"""Why a leaf got no gradient when the run's backward raised before reaching it. The run's error
shows torch's message and traceback once; each leaf's answer says what happened in a line, not the
whole message again. The commonest failure, a value autograd saved and the forward then modified in
place, is explained from the graph: the node whose backward needed it (its saved value reads as
unavailable), what was modified, and the in-place edit when its line shows one.

    >>> short("RuntimeError: boom. Hint: enable anomaly detection to find the operation.")
    'RuntimeError: boom'
"""

from __future__ import annotations

import re

from ..graph import Graph, Node, SavedValue, Unavailable, Why
from .text import shorten
from .why_values import in_module

INPLACE = "modified by an inplace operation"
_VERSION = re.compile(
    r"\[(?P<type>[\w.]+) \[(?P<shape>[\d, ]*)\]\](?:, which is output (?P<nr>\d+) of (?P<op>\w+),)? is at version "
    r"(?P<now>\d+); expected version (?P<then>\d+)"
)
# x += 1, x[i] = v, x.add_(1), relu(inplace=True): what a source line of an in-place edit looks like
_EDIT = re.compile(r"[-+*/@%&|^]=|\]\s*=(?!=)|\.\w+_\(|inplace=True")


def short(last: str, limit: int = 200) -> str:
    """The first sentence of an error's last line, at most ``limit`` characters (:func:`text.shorten`)."""
    return shorten(last.split(". ", 1)[0].rstrip("."), limit)


def _last_line(failure: str) -> str:
    """A traceback's last line: the exception, as Python prints it."""
    return failure.strip().splitlines()[-1] if failure.strip() else "an error"


CELL_RAISED = "The cell raised "  # how a cell's graph notes the error that stopped it (cell._error_note)


def cell_failure(graph: Graph) -> str | None:
    """The error a %%gradsight cell raised, as a traceback's last line, from its graph's note (a cell's
    error is shown with the cell, not kept as the run's); None for other runs."""
    if graph.run.mode != "cell":
        return None
    return next((note.removeprefix(CELL_RAISED) for note in graph.notes if note.startswith(CELL_RAISED)), None)


def failed(name: str, graph: Graph, failure: str) -> Why | None:
    """Why ``name`` got no gradient when the run's backward raised ``failure`` (a traceback) before
    reaching it; None when backward did reach it (or it is not in the graph)."""
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == name), None)
    if node is None or node.executed is not False:
        return None
    last = _last_line(failure)
    if INPLACE in last:
        return _inplace(name, node, graph, last)
    return Why(name, "backward_error", f"{name} got no gradient because this run's backward raised before "
               f"reaching it ({short(last)}): fix that error, shown with the run, and re-run.",
               where=node.id)  # fmt: skip


def no_graph(name: str, failure: str) -> Why:
    """Why ``name`` got no gradient when the run raised (``failure``: its traceback) before it built
    any graph: the forward or the loss raised, so no backward ran. Answered from the error, without
    re-running the code that raised it."""
    last = _last_line(failure)
    return Why(name, "unknown", f"{name} got no gradient because this run raised before any backward ran "
               f"({short(last)}): its forward or loss did not finish, so there is no graph to explain. Fix that "
               "error, shown with the run, and re-run.")  # fmt: skip


def _unavailable(value: SavedValue) -> bool:
    if isinstance(value, Unavailable):
        return INPLACE in value.reason
    return isinstance(value, tuple) and any(_unavailable(v) for v in value)


def _inplace(name: str, leaf: Node, graph: Graph, last: str) -> Why:
    """The in-place modification of a saved value, from the graph: which node needed it, what it was,
    and where it was edited when a source line shows it."""
    needs = next((n for n in graph.nodes if any(_unavailable(v) for v in n.saved.values())), None)
    m = _VERSION.search(last)
    what, versions = "a value it saved in the forward", ""
    if m is not None:
        shape = f"[{m['shape']}]" if m["shape"] else "0-d"
        made = f"output {m['nr']} of {m['op']}, " if m["op"] else ""
        what += f" ({made}a {shape} {m['type']})"
        versions = f" (version {m['then']} → {m['now']})"
    param = _edited_parameter(graph, needs, m) if m is not None else None
    if param is not None and param.leaf is not None:
        user = needs or next((n for n in graph.nodes if any(d == param.id for d, _ in n.next)), None)
        stopped = in_module(user) if user else "a node"
        text = (f"{name} got no gradient: the backward stopped at {stopped}, which needs "
                f"the parameter {param.leaf.name} as the forward used it, and {param.leaf.name} was modified in place "
                f"between the forward and the backward{versions} — an optimizer.step() (or a weight update, zero_, "
                "copy_) before loss.backward(). Call backward first, then step the optimizer; or run the forward "
                "again after the update.")  # fmt: skip
        return Why(name, "backward_error", text, where=param.id)
    at = f"{in_module(needs)}, which needs" if needs is not None else "a node that needs"
    edit = _edit(graph, needs, m["op"] if m is not None else None)
    where = edit or needs or leaf
    text = (f"{name} got no gradient: the backward stopped at {at} {what}, and the forward then modified that value "
            f"in place{versions}.")  # fmt: skip
    if edit is not None and edit.source:
        text += f" The in-place edit is likely `{_code(edit.source)}` ({edit.source.split('  ', 1)[0]})."
    elif m is not None:
        text += _unseen_edit(m, needs)
    text += (" Make it out of place (x = x + 1 instead of x += 1, torch.where instead of x[mask] = v, no "
             "inplace=True), or .clone() the value before editing it.")  # fmt: skip
    return Why(name, "backward_error", text, where=where.id, source=where.source)


_VIEWS = ("AsStrided", "T", "Transpose", "Permute", "View", "Expand", "Unsqueeze", "Squeeze")


def _edited_parameter(graph: Graph, needs: Node | None, m: re.Match[str]) -> Node | None:
    """The leaf (a parameter) whose own values the edited saved value was — saved directly, or through a
    view of it (torch names it ``output 0 of AsStrided``) — found among ``needs``'s inputs by shape."""
    if m["op"] is not None and m["op"] not in _VIEWS:
        return None
    shape = tuple(int(d) for d in m["shape"].split(",") if d.strip()) if m["shape"] else ()
    if needs is None:  # no saved values read (a live step): the one named parameter of that shape, if one
        fits = [n for n in graph.nodes if n.leaf is not None and n.leaf.name and n.leaf.is_parameter and shape
                and n.leaf.shape in ((shape, shape[::-1]) if m["op"] is not None else (shape,))]  # fmt: skip
        return fits[0] if len(fits) == 1 else None
    nodes = graph.by_id
    stack = [(nodes[d], 0) for d, _ in needs.next if d is not None and d in nodes]
    while stack:
        node, hops = stack.pop()
        if node.leaf is not None:
            direct = hops == 0 and node.leaf.shape == shape  # saved as is: torch names no op
            viewed = m["op"] is not None and node.leaf.shape in (shape, shape[::-1])
            if node.leaf.name and shape and (direct or viewed):
                return node
        elif hops < 2 and node.name.startswith(_VIEWS):
            stack += [(nodes[d], hops + 1) for d, _ in node.next if d is not None and d in nodes]
    return None


# the in-place spellings of the ops torch names as the edited value's maker ("output 0 of Add")
_SPELLED = {"Add": "add_ or +=", "Sub": "sub_ or -=", "Mul": "mul_ or *=", "Div": "div_ or /=", "Zero": "zero_()",
            "Fill": "fill_()", "Copy": "copy_()", "CopySlices": "x[i] = v", "Clamp": "clamp_()", "Relu": "relu_()",
            "IndexPut": "x[mask] = v", "MaskedFill": "masked_fill_()"}  # fmt: skip


def _unseen_edit(m: re.Match[str], needs: Node | None) -> str:
    """Where to look for an edit the graph does not show: an in-place op whose result does not reach the
    loss (torch names it), or a tensor from outside the graph (torch names no op)."""
    after = ""
    if needs is not None and needs.source:
        after = f" after `{_code(needs.source)}` ({needs.source.split('  ', 1)[0]})"
    op = m["op"]
    if op is not None and op not in _VIEWS:
        spelled = _SPELLED.get(op, f"{op.lower()}_")
        return (
            f" The edit is not on the path to the loss (nothing after it reaches the loss), so the graph does "
            f"not show it: torch names the value output {m['nr']} of {op}, so look for an in-place {spelled} on "
            f"it{after}."
        )
    if op is None and needs is not None and any(dst is None for dst, _ in needs.next):
        return (
            f" The value is a tensor from outside the graph (one that does not require grad: the batch, a "
            f"mask, a buffer) that was edited in place once the forward had used it{after}: look for a "
            f"{m['type'].rsplit('.', 1)[-1]} of shape [{m['shape']}] edited in place (x -= x.mean(), x[i] = v)."
        )
    return ""


def _code(source: str) -> str:
    """The code of a node's source line ("file.py:12  h += 1  # note" -> "h += 1")."""
    return source.split("  ", 1)[-1].split("#", 1)[0].strip()


def _edit(graph: Graph, needs: Node | None, op: str | None) -> Node | None:
    """The node of the in-place edit, made by an in-place op (``CopySlices``) or on a line that edits:
    a consumer of the op whose output was modified (``op``, or the node that needed the value), or
    the node torch names (``op``: a value saved as an input is named by its grad_fn after the edit)."""
    if needs is None:
        return None
    nodes = graph.by_id
    below = [needs, *(nodes[d] for d, _ in needs.next if d is not None and d in nodes)]
    made = next((n for n in below if op is not None and n.name.startswith(op)), needs)
    for n in graph.nodes:
        if n.id == needs.id:
            continue
        named = op is not None and made is needs and n.name.startswith(op)
        if not named and not any(dst == made.id for dst, _ in n.next):
            continue
        if n.name.startswith("CopySlices") or _EDIT.search(_code(n.source or "")):
            return n
    return None
