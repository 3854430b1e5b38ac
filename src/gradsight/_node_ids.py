"""What ``dbg.inspect`` says when the id it is given names no node: the id a user meant, when it can
tell (a leaf's name for its ``leaf:`` id, an op's name for the ids of its nodes), and how to list the
ids; in live mode before any training step, that there is no graph yet. Torch-free.

    >>> from gradsight.graph import Graph, Node
    >>> g = Graph(nodes=(Node(id="leaf:w", name="AccumulateGrad", kind="leaf"),), roots=("leaf:w",))
    >>> unknown_node(g, "w")
    "no node 'w' in this graph; did you mean 'leaf:w'? (a leaf's node id is 'leaf:' + its name)"
"""

from __future__ import annotations

from .graph import Graph
from .toggles import suggest

_LISTED = "[n.id for n in dbg.graph.nodes] lists them; dbg.graph.find('Addmm') finds nodes by name"


def check_node_id(graph: Graph, node_id: object) -> None:
    """Raise ``TypeError`` (not a str) or ``KeyError`` (no such node) in words that say what to pass."""
    if not isinstance(node_id, str):
        raise TypeError(
            f"dbg.inspect takes a node id (a str), e.g. dbg.inspect('leaf:layer1.weight'); got {node_id!r}: " + _LISTED
        )
    if node_id not in graph:
        raise KeyError(unknown_node(graph, node_id))


def unknown_node(graph: Graph, node_id: str) -> str:
    """Why ``node_id`` names no node of ``graph``, and which id to use instead."""
    if graph.run.mode == "live" and not graph.nodes:
        return (
            f"no node {node_id!r} yet: this live debugger has not seen a training step. Run one (output = "
            "model(batch); loss = ...; loss.backward()) and inspect again"
        )
    ids = [n.id for n in graph.nodes]
    leaf = f"leaf:{node_id}"
    if leaf in graph:  # the name of a leaf, not its node id
        return f"no node {node_id!r} in this graph; did you mean {leaf!r}? (a leaf's node id is 'leaf:' + its name)"
    named = [n.id for n in graph.nodes if n.name == node_id]  # an op's name: its nodes' ids
    if named:
        shown = ", ".join(repr(i) for i in named[:4]) + (", …" if len(named) > 4 else "")
        return f"no node {node_id!r} in this graph: that is an op's name; its nodes' ids are {shown}"
    return f"no node {node_id!r} in this graph" + suggest(node_id, ids, _LISTED)
