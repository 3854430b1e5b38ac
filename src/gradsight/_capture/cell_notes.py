"""Notes only a %%gradsight cell's graph has: advice for saved values a backward freed that gradsight did
not see, and ``.grad`` that summed several backward calls of the cell (or added to a gradient it held);
the statistics of saved tensors the cell's spy read before a backward freed them; and a cell that built
no graph because what it bound is a leaf's ``.grad``, or whose backward ran through a graph it bound to
no name (:func:`grads_worded`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

import torch

from ..graph import Graph, Node, SavedValue, TensorSummary, Unavailable
from . import saved as saved_mod
from .records import Captured
from .spy import Accumulation
from .store import TensorStore

FREED_IN_CELL = (
    "freed by a backward gradsight did not see — an earlier cell's, another thread's, or one through backward/grad "
    "imported before the cell (from torch.autograd import grad): compute it in this cell, call torch.autograd.grad "
    "or loss.backward() there (on the cell's thread), or pass retain_graph=True"
)
_FREED_NOTE = re.compile(r"Backward already freed the saved tensors of (\d+) node\(s\)")


def freed_in_cell(graph: Graph) -> Graph:
    """The advice for saved values a backward freed, for a cell: it already is a %%gradsight cell, whose
    backward calls gradsight reads before; what freed them is a backward it did not see."""
    notes = []
    for note in graph.notes:
        found = _FREED_NOTE.match(note)
        if found and "%%gradsight cell" in note:
            note = (
                f"A backward gradsight did not see had already freed the saved tensors of {found.group(1)} node(s), "
                "so their values are gone: one in an earlier cell, on another thread, or one through backward/grad "
                "imported before the cell (from torch.autograd import grad). Compute them in this cell and call "
                "torch.autograd.grad or loss.backward() there, on the cell's thread (gradsight reads what they free "
                "just before), or pass retain_graph=True."
            )
        notes.append(note)
    if tuple(notes) == graph.notes:
        return graph
    nodes = tuple(_reworded(n) for n in graph.nodes)
    return replace(graph, nodes=nodes, notes=tuple(notes))


def _reworded(node: Node) -> Node:
    if not any(isinstance(v, Unavailable) and v.reason == saved_mod.FREED for v in node.saved.values()):
        return node
    saved = {k: Unavailable(FREED_IN_CELL) if isinstance(v, Unavailable) and v.reason == saved_mod.FREED else v
             for k, v in node.saved.items()}  # fmt: skip
    return replace(node, saved=saved)


def with_presaved_stats(captured: Captured) -> Graph:
    """The graph with the statistics of saved tensors a backward freed after the cell's spy read them:
    the store took them when the walk offered those tensors (a small capture: every statistic at
    once), but the graph kept the spy's summary, which has none."""
    graph, store = captured.graph, captured.store
    if store is None:
        return graph
    nodes, changed = [], False
    for node in graph.nodes:
        i = captured.index_of.get(node.id)
        if i is not None and any(_freed_bare(v) for v in node.saved.values()):
            node = replace(node, saved={k: _stats_in(v, i, k, store) for k, v in node.saved.items()})
            changed = True
        nodes.append(node)
    return replace(graph, nodes=tuple(nodes)) if changed else graph


def _freed_bare(value: SavedValue) -> bool:
    if isinstance(value, tuple):
        return any(_freed_bare(v) for v in value)
    return isinstance(value, TensorSummary) and value.freed and value.min is None and value.norm is None


def _stats_in(value: SavedValue, i: int, path: str, store: TensorStore) -> SavedValue:
    if isinstance(value, tuple):
        return tuple(_stats_in(v, i, f"{path}[{k}]", store) for k, v in enumerate(value))
    if not _freed_bare(value):
        return value
    found = store.stats_of((i, "saved:" + path))
    return value if found is None else replace(found, freed=True)


_SHOWN = 6  # leaves named in an accumulation note


def accumulation_note(accumulated: list[tuple[torch.Tensor, Accumulation]],
                      names: Mapping[torch.Tensor, str]) -> str | None:  # fmt: skip
    """What the graph cannot show: leaves whose ``.grad`` is the sum of several backward calls (or
    added to what it held), while their node shows the last call's gradient."""
    if not accumulated:
        return None
    if len(accumulated) == 1:
        leaf, acc = accumulated[0]
        name = names.get(leaf)
        subject = f"{name}.grad" if name else f"The .grad of a leaf of shape {tuple(leaf.shape)}"
        grad, into = (f"{name}.grad", name) if name else ("its .grad", "that leaf")
        total = grad_norm(leaf.grad)
        total_text = "" if total is None else f" (norm {total:.4g})"
        before = acc.before_norm() if acc.held() else None
        if acc.calls > 1:
            held = "" if before is None else f", on top of a gradient it already held (norm {before:.4g})"
            sums = "them all" if before is None else "them all and what it held"
            return (f"{subject} accumulated over {acc.calls} backward calls in this cell{held}: the gradient shown "
                    f"flowing into {into} is the last call's; {grad} holds the sum of {sums}{total_text}. Set "
                    f"{grad} = None (or call optimizer.zero_grad()) between backward calls unless you meant to add "
                    "them up.")  # fmt: skip
        return (f"{subject} already held a gradient (norm {before or 0:.4g}) when this cell's backward added to it "
                f"(an earlier cell's backward, or one gradsight did not see): the gradient shown flowing into {into} "
                f"is this cell's; {grad} holds the sum{total_text}. Set {grad} = None (or call "
                "optimizer.zero_grad()) before backward unless you meant to add them up.")  # fmt: skip
    parts = []
    for leaf, acc in accumulated[:_SHOWN]:
        name = names.get(leaf) or f"a leaf of shape {tuple(leaf.shape)}"
        calls = f"{acc.calls} backward calls" if acc.calls > 1 else "1 backward call"
        norm = acc.before_norm() if acc.held() else None
        parts.append(f"{name} ({calls}{'' if norm is None else f' on top of a gradient it held, norm {norm:.4g}'})")
    more = len(accumulated) - _SHOWN
    listed = ", ".join(parts) + (f" and {more} more" if more > 0 else "")
    return (
        f"The .grad of {len(accumulated)} leaves holds the sum of several of this cell's backward calls (or of "
        f"one and what .grad held before): {listed}. The gradient shown flowing into each is the last call's. "
        "Set .grad = None (or call optimizer.zero_grad()) before each backward unless you meant to add them up."
    )


UNBOUND_BACKWARD = "This cell ran a backward through a graph it bound to no name"


def grads_worded(graph: Graph, created: Mapping[str, torch.Tensor], leaf_names: Mapping[torch.Tensor, str],
                 backward_ran: bool, not_given: Mapping[str, torch.Tensor] | None = None) -> Graph:  # fmt: skip
    """A cell that built no graph, said truly: a result that is a leaf's ``.grad`` (the cell read a
    gradient) is no tensor whose inputs needed ``requires_grad=True`` (a ``.grad`` never has a graph of
    its own), and a backward the cell ran (``backward_ran``) through a graph an earlier cell computed is
    noted (:data:`UNBOUND_BACKWARD`): why() then knows this cell's backward may have written a ``.grad``,
    but for the leaves it gave none (``not_given``: ``cell_given``; None: not known, a backward the spy
    could not watch), which a note names."""
    from .cell_given import not_given_note
    from .tensors import why_no_graph

    if graph.nodes:
        return graph
    earlier = "an earlier backward (an earlier cell's, or one gradsight did not see)"
    here = "this cell's backward (or an earlier one)" if not_given is None else "this cell's backward"
    stale = {id(t) for t in (not_given or {}).values()}
    lines = (graph.message or "").split("\n")
    for name, t in created.items():
        leaf, owner = next(((leaf, n) for leaf, n in leaf_names.items() if t.grad_fn is None and leaf.grad is t),
                           (None, None))  # fmt: skip
        general = why_no_graph(t, name)
        if owner is not None and general in lines:
            source = here if backward_ran and id(leaf) not in stale else earlier
            lines[lines.index(general)] = (
                f"{name} is {owner}.grad: a gradient, written by {source}. A .grad holds values and has no graph "
                f"of its own, so there is nothing to draw. To see how the gradient flowed to {owner}, compute the loss "
                "and call its backward in a %%gradsight cell."
            )  # fmt: skip
    notes = graph.notes
    if backward_ran:
        notes = (*notes, f"{UNBOUND_BACKWARD} (one an earlier cell computed): gradsight draws the graphs of the "
                 "tensors a cell binds, so it does not show that backward. Compute the loss in this cell too to see "
                 "its gradients flow.")  # fmt: skip
        notes = (*notes, *(n for n in [not_given_note(list(not_given or ()))] if n))
    message = "\n".join(lines) if graph.message is not None else None
    return replace(graph, message=message, notes=notes)


def grad_norm(t: torch.Tensor | None) -> float | None:
    """The norm of a ``.grad`` (None for none, or none finite), read without recording a graph."""
    from .hooks import grad_meta

    with torch.no_grad():  # a .grad made by backward(create_graph=True) requires grad itself
        meta = grad_meta(None if t is None else t.detach())
    norm = None if meta is None else meta[4]
    return None if norm is None else float(norm)
