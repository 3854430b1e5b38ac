"""Why is this ``.grad`` None (or zero)? Explanations that point at where the path breaks.

Cheap answers first, from what the run already knows: the leaf does not require grad; the whole
step ran under ``no_grad`` / ``inference_mode``; backward excluded it. Otherwise a *taint trace*
re-runs the forward under a ``TorchFunctionMode`` that follows every value computed from the leaf,
autograd or not: the first call whose inputs carry the leaf's data with ``requires_grad`` but
whose outputs lose it is where the path breaks (``detach``, ``.data``, a ``no_grad`` or
``inference_mode`` region, a non-differentiable op such as ``argmax`` or a comparison); a leaf
whose values never reach the loss is "not on the path" (taint.py). A zero or NaN/Inf gradient is
traced in the graph to the node after which the gradient toward the leaf is zero or not finite (a
dead ReLU, a zero mask, a sqrt at 0: why_flow.py), and NaN/Inf the forward already made to where
they first appear (why_forward.py). A gradient that is finite but exploding or vanishing is
explained by why_extreme.py, one lost to a backward that raised by why_failed.py.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import torch

from ..graph import Graph, Node, Why, WhyReason
from ..toggles import Toggles
from .cell_given import not_given_in
from .whatif import differentiable
from .why_flow import Starts, nonfinite, starts_of, zero


def quick(name: str, leaf: torch.Tensor | None, toggles: Toggles, graph: Graph,
          leaf_nodes: dict[str, Node] | None = None, origins: Starts | None = None,
          traceable: bool = True, others: Collection[str] = (),
          values: Mapping[str, torch.Tensor | None] | None = None) -> Why | None:  # fmt: skip
    """An explanation from what is known without running anything, or None. ``origins``: the
    graph's :class:`Starts`, shared when several leaves are explained at once. ``traceable``: why()
    can trace where a path breaks (a re-run), so messages may send the user there. ``others``: the
    leaf's other names (:func:`other_names`), whose toggles apply to it too. ``values``: the leaves'
    tensors by name, whose own NaN/Inf explain a NaN/Inf gradient where no statistics were taken."""
    node = (leaf_nodes if leaf_nodes is not None else leaf_node_index(graph)).get(name)
    if node is not None:
        return _in_graph(name, node, graph, origins or starts_of(graph, values))
    flip = _flip(name, toggles, others)
    flipped = flip[2] if flip is not None else None
    if flipped is False or (leaf is not None and not leaf.requires_grad):
        if flip is not None and flipped is False:
            how, fix = "this re-run's requires_grad toggle set it off", "Turn the toggle off to get the gradient back."
            key, under = flip[0], flip[1]
            if under != name:  # set under another of its names
                how = (f"this re-run's requires_grad toggle on {key} set it off ({name} is also {under}: one "
                       "tensor under both names, a tied weight or a module reached two ways)")  # fmt: skip
        elif isinstance(leaf, torch.nn.Parameter):
            how = "it has requires_grad=False (a frozen parameter)"
            fix = "Set requires_grad=True (or unfreeze its module) to train it."
        elif leaf is not None and not differentiable(leaf):
            how = f"it holds {str(leaf.dtype).removeprefix('torch.')} values (indices, labels, counts)"
            fix = ("Only floating-point and complex tensors can have gradients; an integer input has none to "
                   "give (an embedding's gradient goes to its weight).")  # fmt: skip
        else:
            how, fix = ("it is a tensor that does not require grad (requires_grad=False)",
                        f"Create it with requires_grad=True (or call {name}.requires_grad_() before using it) to get a "
                        "gradient.")  # fmt: skip
        return Why(name, "requires_grad_false",
                   f"{name} gets no gradient: {how}, so autograd does not track it — no AccumulateGrad node, "
                   f".grad stays None. {fix}")  # fmt: skip
    if toggles.inference_mode is True or toggles.no_grad is True:
        kind: WhyReason = "inference_mode" if toggles.inference_mode is True else "no_grad"
        return Why(name, kind, f"{name} gets no gradient: the whole step ran under torch.{kind}() (this re-run's "
                   "toggle), so autograd recorded no graph at all.")  # fmt: skip
    scoped = _scoped(name, toggles)
    if scoped is not None:
        kind, module = scoped
        return Why(name, kind, f"{name} gets no gradient: this re-run's {kind} toggle runs module {module} under "
                   f"torch.{kind}(), so autograd records nothing inside it, where {name} belongs. That is "
                   "gradsight's what-if, not your code: turn the toggle off to get the gradient back.")  # fmt: skip
    if name in toggles.detach:
        return Why(name, "detach", f"{name} gets no gradient: this re-run's detach toggle detaches {name} itself, "
                   "so nothing computed from it has a path back to it. That is gradsight's "
                   "what-if, not your code: turn the toggle off to get the gradient back.")  # fmt: skip
    if graph.run.mode == "live" and not graph.nodes:
        return Why(name, "unknown", f"Nothing to explain for {name} yet: this live debugger has not seen a training "
                   "step. Run one (output = model(batch); loss = ...; loss.backward()) and ask again.")  # fmt: skip
    if graph.message is not None and not graph.nodes:
        held = held_before(name, leaf, graph) if toggles.empty else None
        return held or Why(name, "unknown", no_graph(name, toggles, traceable))
    return None


def held_before(name: str, leaf: torch.Tensor | None, graph: Graph) -> Why | None:
    """Why a leaf whose ``.grad`` holds a gradient got none from a cell that built no graph (it read
    values, such as that ``.grad``): no backward of this cell's graphs gave it, an earlier one did (or
    one the cell ran through a graph it bound to no name, :data:`cell_notes.UNBOUND_BACKWARD`, unless it
    gave this leaf nothing: ``cell_given``). None for other runs and for a leaf without a ``.grad``."""
    from .cell_notes import grad_norm

    if graph.nodes or graph.run.mode != "cell" or leaf is None or leaf.grad is None:
        return None
    norm = grad_norm(leaf.grad)
    held = f"{name}.grad holds a gradient ({'no finite norm' if norm is None else f'norm {norm:.4g}'})"
    if written_here(leaf, graph, name):
        return Why(name, "unknown", f"{held}, from this cell's backward (or one before it), which ran through a graph "
                   "the cell bound to no name (an earlier cell computed it): gradsight draws the graphs of the tensors "
                   f"a cell binds, so it cannot show how that gradient reached {name}. Compute the loss in this cell "
                   "too to see it flow.")  # fmt: skip
    if name in not_given_in(graph):
        return Why(name, "unknown", f"{name} got no gradient in this cell: its backward ran through a graph the "
                   f"cell bound to no name (an earlier cell computed it), which gave {name} nothing. {held}, from an "
                   f"earlier backward (an earlier cell's, or one gradsight did not see). To see where {name}'s path to "
                   "that loss breaks, compute the loss in this cell and call its backward there.")  # fmt: skip
    return Why(name, "unknown", f"{name} got no gradient in this cell: nothing the cell computed has a graph (it read "
               f"values, such as a .grad), so no backward ran here. {held}, from an earlier backward (an earlier "
               f"cell's, or one gradsight did not see). To see how it flowed to {name}, compute the loss and call its "
               "backward in a %%gradsight cell.")  # fmt: skip


def written_here(leaf: torch.Tensor | None, graph: Graph, name: str) -> bool:
    """Whether ``leaf``'s ``.grad`` may be this cell's backward's: the cell built no graph but ran a
    backward through one it bound to no name (:data:`cell_notes.UNBOUND_BACKWARD`), the leaf holds
    a ``.grad``, and the graph does not say that backward gave ``name`` nothing (``cell_given``). Such a
    leaf is no missing gradient (:func:`explain_all`), whatever why() says of it."""
    from .cell_notes import UNBOUND_BACKWARD

    return (not graph.nodes and graph.run.mode == "cell" and leaf is not None and leaf.grad is not None
            and any(note.startswith(UNBOUND_BACKWARD) for note in graph.notes)
            and name not in not_given_in(graph))  # fmt: skip


def no_graph(name: str, toggles: Toggles, traceable: bool = True) -> str:
    """Why ``name`` got nothing when the run built no graph at all (the graph's message says why for
    each result, not for this leaf)."""
    cuts = cutting_toggles(toggles)
    if cuts:
        text = (f"{name} gets no gradient: this re-run built no graph at all, and its {cuts} cuts every path "
                f"through where it applies: if {name}'s path to the loss goes there, that is the break — gradsight's "
                "what-if, not your code.")  # fmt: skip
    else:
        text = (f"{name} gets no gradient: nothing this run computed has a graph (the graph's message says why), "
                f"so no backward can reach {name}.")  # fmt: skip
    return text + (" Ask why (click it) to trace where its path breaks." if traceable else "")


def cutting_toggles(toggles: Toggles) -> str:
    """The toggles of a re-run that can cut a leaf's path from outside its module, in words
    (``no_grad toggle on bn``), or "" when there are none."""
    parts = [f"{kind} toggle on {', '.join(scope)}" for kind, scope in
             (("no_grad", toggles.no_grad), ("inference_mode", toggles.inference_mode))
             if not isinstance(scope, bool) and scope]  # fmt: skip
    if toggles.detach:
        parts.append(f"detach toggle on {', '.join(toggles.detach)}")
    return " and ".join(parts)


def _flipped(name: str, toggles: Toggles, others: Collection[str] = ()) -> bool | None:
    """The requires_grad toggle that applies to ``name``'s tensor (:func:`_flip`), or None."""
    flip = _flip(name, toggles, others)
    return flip[2] if flip is not None else None


def _flip(name: str, toggles: Toggles, others: Collection[str] = ()) -> tuple[str, str, bool] | None:
    """(toggle key, the leaf's name under it, value) of the requires_grad toggle that applies to
    ``name``'s tensor, under ``name`` or any of its ``others`` (tied weights: ``head`` freezes
    ``emb.weight`` when ``head.weight`` is it): its own entry, else its innermost module's; where
    several apply, the one ``WhatIf.flips`` sets last."""
    names = (name, *others)
    own = [(n, n, v) for n, v in toggles.requires_grad.items() if n in names]
    if own:
        return own[-1]
    owners = [(m, n, v) for m, v in toggles.requires_grad.items() for n in names if n.startswith(m + ".")]
    return sorted(owners, key=lambda owner: len(owner[0]))[-1] if owners else None


def other_names(names: Mapping[str, torch.Tensor | None], aliases: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Leaf name → its tensor's other names: the other paths of a shared parameter (``aliases``:
    path → the name it is shown under, as ``names.leaf_aliases`` gives them) and the other names in
    ``names`` of the same tensor (a cell's ``L.weight`` and ``A.0.weight``).

    >>> w = torch.zeros(1)
    >>> other_names({"emb.weight": w, "x": None}, {"head.weight": "emb.weight"})
    {'emb.weight': ('head.weight',)}
    """
    groups: dict[int, list[str]] = {}  # a tensor's names
    for name, t in names.items():
        if t is not None:
            groups.setdefault(id(t), []).append(name)
    for alias, shown in aliases.items():
        t = names.get(shown)
        group = groups.get(id(t)) if t is not None else None
        if group is not None and alias not in group:
            group.append(alias)
    return {name: tuple(n for n in group if n != name) for group in groups.values() if len(group) > 1
            for name in group if name in names}  # fmt: skip


def _scoped(name: str, toggles: Toggles) -> tuple[WhyReason, str] | None:
    """(kind, module) when a per-module no_grad / inference_mode toggle covers the module ``name``
    belongs to (its innermost toggled one). Leaves used before such a module are left to the trace."""
    found: tuple[WhyReason, str] | None = None
    kinds: tuple[tuple[WhyReason, bool | tuple[str, ...]], ...] = (
        ("inference_mode", toggles.inference_mode), ("no_grad", toggles.no_grad))  # fmt: skip
    for kind, scope in kinds:
        for module in () if isinstance(scope, bool) else scope:
            if name.startswith(module + ".") and (found is None or len(module) > len(found[1])):
                found = (kind, module)
    return found


def leaf_node_index(graph: Graph) -> dict[str, Node]:
    """Named leaves of the graph by name (first one wins)."""
    out: dict[str, Node] = {}
    for n in graph.nodes:
        if n.leaf is not None and n.leaf.name:
            out.setdefault(n.leaf.name, n)
    return out


def _in_graph(name: str, node: Node, graph: Graph, origins: Starts) -> Why | None:
    if node.executed is False and node.id not in origins.below_a_differentiated_root():
        roots = ", ".join(r for r in graph.roots if not graph.node(r).executed)
        text = (
            f"{name} is in the graph, but only under roots that backward was not called on ({roots}): "
            "call backward on the loss it should reach, or compute that loss from it."
        )
        return Why(name, "not_on_path", text, where=node.id)
    if node.executed is False:
        return Why(name, "not_on_path",
                   f"{name} is in the graph but backward did not compute its gradient: backward(inputs=...) or "
                   "torch.autograd.grad(...) asked for other tensors only.", where=node.id)  # fmt: skip
    if node.executed is None and any("freed the saved tensors" in note for note in graph.notes):
        return _freed(name, node)
    if node.grad_norm == 0.0:
        return zero(name, node, graph, origins.zero(), origins.dead, origins.values.values)
    if node.nonfinite_gradient:
        return nonfinite(name, node, graph, origins.nonfinite(), origins.causes, origins.values)
    return None


def _freed(name: str, node: Node) -> Why:
    """A graph a backward gradsight did not watch ran through (and freed) before it was shown: what
    ``name``'s ``.grad`` held when it was captured says whether that backward (or one before it) gave it one."""
    again = ("Calling backward again raises 'Trying to backward through the graph a second time': rebuild the graph "
             "(run the forward again) or pass retain_graph=True.")  # fmt: skip
    grad = node.leaf.grad if node.leaf is not None else None
    if grad is None:
        return Why(name, "freed", f"A backward already ran through this graph and freed it, and {name}.grad is None: "
                   f"{name} was not among what it differentiated. {again}", where=node.id)  # fmt: skip
    norm = f"norm {grad.norm:.4g}" if grad.norm is not None else "no finite norm"
    return Why(name, "freed",
               f"{name}.grad holds a gradient ({norm}), from the backward that already ran through this graph (or "
               "one before it), but gradsight did not watch that backward, so the graph shows no gradient flowing. "
               "To see it flow, give gradsight the step — gs.debugger(lambda: compute_loss()) or gs.debugger(model, "
               f"inputs=batch, loss=...) — or compute the loss and call its backward in a %%gradsight cell. {again}",
               where=node.id)  # fmt: skip


def needs_explaining(node: Node) -> bool:
    """Backward skipped it, or what it got is zero or NaN/Inf: a leaf the view explains."""
    return node.executed is False or node.grad_norm == 0.0 or node.nonfinite_gradient


def explain_all(names: Mapping[str, torch.Tensor | None], toggles: Toggles, graph: Graph,
                traceable: bool = True, aliases: Mapping[str, str] | None = None) -> tuple[Why, ...]:  # fmt: skip
    """Quick explanations for every named leaf that got no gradient (or a zero one) in ``graph``.

    A tensor is explained once, whatever its names: one the graph shows under another name (a module
    reachable as ``L`` and ``A[0]``, a for loop's variable) is not missing. Without a backward in the
    run, a parameter outside the graph is no missing gradient either (nothing got one: a cell that
    reads one layer's weight does not miss the others'), unless the cell's backward through a graph it
    bound to no name gave it nothing while it held an earlier one's ``.grad`` (``cell_given``); nor is a
    leaf whose ``.grad`` a cell's own backward may have written (:func:`written_here`). ``traceable``: see
    :func:`quick`; ``aliases``: the other paths of shared parameters (:func:`other_names`), whose toggles
    apply to them too."""
    out = []
    others = other_names(names, aliases or {}) if toggles.requires_grad else {}  # what _flipped reads
    leaf_nodes = leaf_node_index(graph)
    origins = starts_of(graph, names)
    drawn = {id(t) for name, t in names.items() if t is not None and name in leaf_nodes}
    seen: set[int] = set()
    # a runnable (or live) run always runs backward: one that built no graph had nothing to run it on
    backward_ran = any(n.executed is not None for n in graph.nodes) or (
        not graph.nodes and graph.run.mode in ("runnable", "live"))  # fmt: skip
    passed = not_given_in(graph)  # a cell's backward ran past them (cell_given)
    for name, leaf in names.items():
        node = leaf_nodes.get(name)
        if node is None and leaf is not None and (id(leaf) in drawn or id(leaf) in seen):
            continue  # another name of a tensor explained (or drawn) under its first one
        if leaf is not None:
            seen.add(id(leaf))
        if node is not None and not needs_explaining(node):
            continue
        if node is None and toggles.empty and written_here(leaf, graph, name):
            continue  # its .grad is what this cell's backward (through a graph it bound to no name) gave
        wanted = isinstance(leaf, torch.nn.Parameter) or (leaf is not None and leaf.requires_grad)
        if node is None and not wanted and name not in toggles.requires_grad:
            continue  # an input that never asked for a gradient (a data batch): not a missing gradient
        if (
            node is None
            and not backward_ran
            and isinstance(leaf, torch.nn.Parameter)
            and _flipped(name, toggles, others.get(name, ())) is None
            and name not in passed
        ):
            continue
        why = quick(name, leaf, toggles, graph, leaf_nodes, origins, traceable, others.get(name, ()))
        out.append(why or Why(name, "unknown", _generic(name, toggles, graph, traceable, backward_ran)))
    return tuple(out)


def node_cut(name: str, toggles: Toggles, earlier: Sequence[Graph]) -> Why | None:
    """This re-run's detach of a node (by id) that ``name``'s path went through in the run it was made
    against (the latest of ``earlier`` holding that node: the run shown when the toggle was set), or
    None. A taint trace cannot tell: it follows values, and the cut is the re-run's edge surgery."""
    for node_id in toggles.detach:
        made_on = next((g for g in earlier if node_id in g), None)
        if made_on is None or not _reaches(made_on, node_id, name):
            continue
        node = made_on.node(node_id)
        what = f"{node.name} in module {node.module}" if node.module else node.name
        return Why(name, "detach", f"{name}'s path to the loss goes through node {node_id} ({what}), whose output "
                   f"this re-run's detach toggle detaches: nothing flows back through it to {name}. That is "
                   "gradsight's what-if, not your code: turn the toggle off to get the gradient back.")  # fmt: skip
    return None


def _reaches(graph: Graph, node_id: str, name: str) -> bool:
    """Whether the leaf ``name`` is below ``node_id`` in ``graph`` (its gradient passed through it)."""
    index, stack, seen = graph.by_id, [node_id], {node_id}
    while stack:
        node = index.get(stack.pop())
        if node is None:
            continue
        if node.leaf is not None and node.leaf.name == name:
            return True
        for child, _ in node.next:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return False


def _generic(name: str, toggles: Toggles, graph: Graph, traceable: bool, backward_ran: bool) -> str:
    """A leaf outside the graph that nothing quick explains."""
    if backward_ran:
        text = f"{name} got no gradient in this run"
    else:
        text = f"{name} is not in the graph this run built (and no backward ran, so nothing got a gradient yet)"
    cuts = cutting_toggles(toggles)
    if cuts:
        text += f"; this re-run's {cuts} may be where its path to the loss is cut (gradsight's what-if)"
    if traceable:
        return text + ": ask why (click it) to trace where its path to the loss breaks."
    return (text + ": its values do not reach what was computed, or their path was cut (detach, .data, no_grad, "
            "a non-differentiable op). This debugger cannot re-run the code to find where: a runnable debugger "
            "or a %%gradsight cell can.")  # fmt: skip
