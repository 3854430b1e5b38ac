"""What a debugger says about a target's run: :func:`finish` completes a run's graph (the leaves
without a gradient, explained; tied weights' other paths; the cell's cuts worded), :func:`explain`
answers ``why()`` for one leaf. A :class:`Target` (``targets``, ``cell_target``) is what they ask.
"""

from __future__ import annotations

import traceback
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import torch

from ..graph import Controls, Graph, Why, WhyReason
from ..toggles import Toggles, suggest
from . import why as why_mod
from . import why_extreme, why_failed
from .facts import RunFacts
from .run import RunResult


class Target(Protocol):
    """What a debugger re-runs (``targets``, ``cell_target``); ``traceable``: a taint trace can re-run
    its code to find where a leaf's path breaks (not a tensor's graph); ``cuts``: the variables its code
    shows computed under no_grad or detached, and why (a cell's, :func:`cell_cuts.cut_results`);
    ``no_backward``: why() of a leaf in a graph whose backward never ran."""

    @property
    def traceable(self) -> bool: ...

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult: ...

    def leaves(self) -> Mapping[str, torch.Tensor | None]: ...

    def aliases(self) -> Mapping[str, str]: ...

    def controls(self, graph: Graph) -> Controls: ...

    def trace(self, name: str, toggles: Toggles) -> Why | None: ...

    def facts(self, graph: Graph) -> RunFacts | None: ...

    def changed(self, since: RunFacts) -> tuple[str, ...]: ...

    def cuts(self) -> Mapping[str, tuple[WhyReason, str]]: ...

    def no_backward(self, name: str) -> str: ...


@runtime_checkable
class RaisesBeforeBackward(Protocol):
    """A target that can say why a leaf got nothing when its run raised (``error``: the exception's
    line) before any backward ran: whether its code has a backward that the error kept from running."""

    def raised_before_backward(self, name: str, error: str) -> str: ...


def finish(target: Target, graph: Graph, toggles: Toggles, failure: str | None = None,
           inside: Mapping[str, float] | None = None, earlier: Sequence[Graph] = ()) -> Graph:  # fmt: skip
    """Add what the view needs for what-ifs: controls, and why leaves got no gradient (``failure``:
    the run's backward raised this traceback; ``inside``: :attr:`RunFacts.in_checkpoint`; ``earlier``:
    the runs before it, latest first, where the nodes its toggles detach by id are)."""
    traceable = target.traceable
    failure = failure or why_failed.cell_failure(graph)
    every = target.aliases()  # tied weights' other paths: graph.find() finds them, requires_grad toggles use them
    aliases = every if toggles.requires_grad else {}
    missing = (why_mod.explain_all(target.leaves(), toggles, graph, traceable, aliases)
               if graph.nodes or graph.message else ())  # fmt: skip
    if failure:
        missing = tuple(why_failed.failed(w.name, graph, failure) or w for w in missing)
    missing = tuple(w for w in missing if w.name not in (inside or {}))
    if earlier and any(d in g for d in toggles.detach for g in earlier):  # a node's detach, by id
        missing = tuple(why_mod.node_cut(w.name, toggles, earlier) or w if w.reason == "unknown" else w
                        for w in missing)  # fmt: skip
    graph = _cut_worded(graph, target.cuts())
    graph = _toggles_worded(graph, toggles)
    graph = _frozen_worded(graph, target.leaves(), toggles)
    return replace(graph, controls=target.controls(graph), missing=missing).with_aliases(every)


def _cut_worded(graph: Graph, off: Mapping[str, tuple[WhyReason, str]]) -> Graph:
    """The graph with the general "requires_grad=False: none of its inputs required grad, no_grad, or
    detached" said of a cell's results replaced by which one it was, for those the cell's code shows
    computed under no_grad or detached (:func:`cell_cuts.cut_results`)."""
    if not off:
        return graph
    from .tensors import why_no_graph

    plain = torch.zeros(())  # the general wording depends on the name only
    general = {why_no_graph(plain, name): text for name, (_, text) in off.items()}
    if graph.message is not None:
        graph = replace(graph, message="\n".join(general.get(line, line) for line in graph.message.split("\n")))
    return replace(graph, notes=tuple(general.get(note, note) for note in graph.notes))


def _toggles_worded(graph: Graph, toggles: Toggles) -> Graph:
    """A re-run that built no graph, said to be the toggles' doing: the message opens with them, and
    the general advice on each result ("none of the tensors it was computed from required grad ... Set
    requires_grad=True on an input") is replaced by which toggle cut it, as ``graph.missing`` says it."""
    off = {name for name, on in toggles.requires_grad.items() if not on}
    if graph.nodes or graph.message is None or not (off or toggles.no_grad or toggles.inference_mode or toggles.detach):
        return graph
    from .tensors import why_no_graph

    general = why_no_graph(torch.zeros(()), "_").removeprefix("_")  # the wording depends on the name only
    leaf = " is a leaf tensor you created (requires_grad=True), so it has no grad_fn"
    lines = []
    for line in graph.message.split("\n"):
        if line.endswith(general):
            name = line.removesuffix(general)
            if name in off:
                line = f"{name} has requires_grad=False: this re-run's requires_grad toggle set it off."
            elif name in toggles.detach:
                line = f"{name} has no graph: this re-run's detach toggle detaches it."
            else:
                line = f"{name} has no graph: with this re-run's toggles, nothing it was computed from requires grad."
        elif leaf in line:
            name = line.split(leaf)[0]
            if line == why_no_graph(torch.zeros((), requires_grad=True), name):
                line = (f"{name} is a leaf that requires grad, but with this re-run's toggles nothing computed from "
                        "it keeps a graph.")  # fmt: skip
        lines.append(line)
    if lines == graph.message.split("\n"):  # worded already (a runnable's "No graph: with this re-run's toggles")
        return graph
    header = (f"This re-run's toggles ({toggles.label}) leave nothing it computed depending on a tensor that "
              "requires grad, so there is no graph: that is gradsight's what-if, not your code (graph.missing and "
              "why() say which toggle cuts which leaf). Turn a toggle off to get the graph back.")  # fmt: skip
    return replace(graph, message="\n".join([header, *lines]))


_FROZEN_SHOWN = 3  # frozen parameters named in the message


def _frozen_worded(graph: Graph, leaves: Mapping[str, torch.Tensor | None], toggles: Toggles) -> Graph:
    """A model's run that built no graph because every parameter of the model is frozen, said so (as
    ``graph.missing`` says of each): the general advice on each output ("Set requires_grad=True on an
    input") is replaced by which parameters are frozen and how to unfreeze them. Not for a cell (the
    parameters it sees need not be what it computed from) nor a re-run with toggles (:func:`_toggles_worded`)."""
    if graph.nodes or graph.message is None or graph.run.mode not in ("runnable", "live") or not toggles.empty:
        return graph
    params = [name for name, t in leaves.items() if isinstance(t, torch.nn.Parameter)]
    if not params or any(t is not None and t.requires_grad for t in leaves.values()):
        return graph  # a leaf requires grad: something else (no_grad, detach) cut its path
    from .tensors import why_no_graph

    general = why_no_graph(torch.zeros(()), "_").removeprefix("_")  # the wording depends on the name only
    lines = graph.message.split("\n")
    outputs = [line.removesuffix(general) for line in lines if line.endswith(general)]
    if not outputs:
        return graph
    shown = ", ".join(params[:_FROZEN_SHOWN])
    if len(params) > _FROZEN_SHOWN:
        shown += f" and {len(params) - _FROZEN_SHOWN} more"
    every = (f"its only parameter ({shown}) has" if len(params) == 1
             else f"all {len(params)} of its parameters ({shown}) have")  # fmt: skip
    what = f"{' and '.join(outputs)} {'has' if len(outputs) == 1 else 'have'}"
    frozen = (f"{what} no graph: the model is frozen — {every} requires_grad=False and the inputs do not "
              "require grad, so autograd recorded nothing and no parameter gets a gradient (graph.missing lists "
              "each). Unfreeze it: model.requires_grad_(True), or p.requires_grad_(True) for the parameters to "
              "train; or try it first without changing the model: "
              f"dbg.rerun(requires_grad={{{params[0]!r}: True}}).")  # fmt: skip
    kept = [line for line in lines if not line.endswith(general)]
    return replace(graph, message="\n".join([frozen, *kept]))


def explain(target: Target, graph: Graph, toggles: Toggles, name: str, failure: str | None = None,
            inside: Mapping[str, float] | None = None, earlier: Sequence[Graph] = ()) -> Why:  # fmt: skip
    """Why ``name`` got no gradient (or a zero one) in ``graph`` (``inside``: :attr:`RunFacts.in_checkpoint`;
    ``earlier``: the runs before it, latest first, where the nodes its toggles detach by id are).
    Another path of a shared parameter (``head.weight`` tied to ``emb.weight``) is answered for the name
    the graph shows it under."""
    leaves, aliases = target.leaves(), target.aliases()
    known = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
    shown = aliases.get(name) if name not in leaves and name not in known else None
    if shown is not None and (shown in leaves or shown in known):
        return _as_alias(name, shown, graph, explain(target, graph, toggles, shown, failure, inside, earlier))
    if name not in leaves and name not in known:
        where = "[n.leaf.name for n in dbg.graph.nodes if n.leaf] lists them"
        inner = sorted(n for n in set(leaves) | known if shown is not None and n.startswith(shown + "."))
        if inner:  # a module's other name (a cell's `wrapped.inner.0` for the graph's `model.0`)
            raise KeyError(f"{name!r} is a module (the graph shows it as {shown!r}), not a leaf: ask why() of one "
                           f"of its parameters: {', '.join(map(repr, inner[:4]))}")  # fmt: skip
        raise KeyError(f"no leaf named {name!r}" + suggest(name, sorted(set(leaves) | known), where))
    failure = failure or why_failed.cell_failure(graph)
    failed = why_failed.failed(name, graph, failure) if failure else None
    if failed is not None:
        return failed
    if failure and not graph.nodes:  # the forward (or the loss) raised: a trace would re-run it and raise again
        return why_failed.no_graph(name, failure)
    inside = inside or {}
    if name in inside:
        return Why(name, "unknown", f"{name} got a gradient (norm {inside[name]:.4g}) inside a reentrant checkpoint "
                   "region: the region is one opaque node whose backward re-runs it and differentiates it on its own, "
                   "so its parameters are no leaves of this graph. Use checkpoint(..., use_reentrant=False) to see "
                   "the region's nodes.")  # fmt: skip
    alias = _alias(name, leaves, known)
    if alias is not None:
        return _as_alias(name, alias, graph, explain(target, graph, toggles, alias, failure, inside, earlier))
    off = target.cuts().get(name)
    value = leaves.get(name)
    if off is not None and value is not None and value.grad_fn is None and not value.requires_grad:
        return Why(name, *off)
    traceable = target.traceable
    others = why_mod.other_names(leaves, aliases).get(name, ())
    quick = why_mod.quick(name, leaves.get(name), toggles, graph, traceable=traceable, others=others, values=leaves)
    held = why_mod.held_before(name, leaves.get(name), graph) if toggles.empty else None
    if quick is not None and quick.reason == "unknown" and not graph.nodes and held is None:
        # no graph at all, which says nothing of this leaf: where its own path breaks is what a trace finds
        traced = _trace(target, name, toggles)
        return traced if traced is not None and traced.reason != "unknown" else quick
    if quick is not None:
        return quick
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == name), None)
    if node is not None and node.executed is None:
        if failure and isinstance(target, RaisesBeforeBackward):
            text = target.raised_before_backward(name, _last_line(failure))
        elif failure:
            text = _raised_before_backward(name, graph, failure)
        else:
            text = target.no_backward(name)
        return Why(name, "unknown", text, where=node.id)
    extreme = why_extreme.extreme(name, node, graph, leaves) if node is not None else None
    if extreme is not None:  # finite, but too big or too small to train with
        return extreme
    if node is not None:
        norm = f"norm {node.grad_norm:.4g}" if node.grad_norm is not None else "an empty one"
        text = f"{name} got a gradient in this run ({norm})."
        if any(note.startswith((f"{name}.grad accumulated", f"{name}.grad already held")) for note in graph.notes):
            text = (f"{name} got a gradient in this run (the last backward call's, {norm}); "
                    f"{name}.grad holds more than that: see the graph's note.")  # fmt: skip
        return Why(name, "unknown", text, where=node.id)
    traced = _trace(target, name, toggles)
    if traced is None or traced.reason == "unknown":  # a node's detach: the trace does not make it
        cut_here = why_mod.node_cut(name, toggles, earlier)
        if cut_here is not None:
            return cut_here
    cuts = why_mod.cutting_toggles(toggles)
    if traced is not None and traced.reason == "unknown" and cuts:  # e.g. a node's detach: not in the trace
        return replace(traced, message=f"{traced.message} This re-run's {cuts} may be the cut: turn it off and "
                       "re-run to see.")  # fmt: skip
    if traced is not None:
        return traced
    cut = ("its path was cut (detach, .data, no_grad, a non-differentiable op)"
           + (f", perhaps by this re-run's {cuts}" if cuts else ""))  # fmt: skip
    if not traceable:
        return Why(name, "not_on_path", f"{name} is not in this graph: the tensor was not used to compute it, or "
                   f"{cut}. This debugger cannot re-run the code: a runnable debugger can trace where.")  # fmt: skip
    return Why(name, "not_on_path", f"{name} is not in this graph: the tensor was not used to compute it, or {cut}. "
               "gradsight could not follow it through a re-run to find where (it is bound where a re-run cannot "
               "follow it, such as a for loop's variable, or there is no step to re-run yet).")  # fmt: skip


def _last_line(failure: str) -> str:
    """A traceback's last line (the exception, as Python prints it)."""
    return failure.strip().splitlines()[-1] if failure.strip() else "an error"


def _raised_before_backward(name: str, graph: Graph, failure: str) -> str:
    """Why a leaf in a graph whose backward never ran got nothing, when the run raised ``failure`` (a
    traceback) first, for a target that cannot tell whether its code has a backward."""
    who, shown = ("the cell", "shown with the cell") if graph.run.mode == "cell" else ("this run", "shown with the run")
    return (f"{name} is in the graph, but {who} raised before any backward ran "
            f"({why_failed.short(_last_line(failure))}), so nothing got a gradient. Fix that error, {shown}, and "
            "run it again.")  # fmt: skip


def _trace(target: Target, name: str, toggles: Toggles) -> Why | None:
    """``target.trace``; when the re-run it makes raises (a forward that failed in the run, whose error
    the caller was not given; the user's code failing now where it ran before), the answer is that
    error, in a line: why() never raises the user's error."""
    try:
        return target.trace(name, toggles)
    except Exception as e:  # the user's code, re-run: any error of it is an answer
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        return Why(name, "unknown", f"{name} got no gradient here: re-running the step to trace where its path "
                   f"breaks raised ({why_failed.short(last)}). Fix that error (the run's, when it raised too) and "
                   "re-run, then ask again.")  # fmt: skip


def _alias(name: str, leaves: Mapping[str, torch.Tensor | None], known: Collection[str]) -> str | None:
    """The name the graph shows ``name``'s tensor under, when that is another name (``L.weight`` for
    ``A.0.weight``: one module reachable two ways, or a for loop's variable)."""
    tensor = leaves.get(name)
    if tensor is None or name in known:
        return None
    return next((other for other in known if leaves.get(other) is tensor), None)


def _as_alias(name: str, alias: str, graph: Graph, answer: Why) -> Why:
    same = f"{name} is the same tensor as {alias}, which the graph shows under that name"
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == alias), None)
    if node is not None and node.executed and not why_mod.needs_explaining(node):
        norm = f" (norm {node.grad_norm:.4g})" if node.grad_norm is not None else ""
        return Why(name, "unknown", f"{same}: it got a gradient in this run{norm}. Read it as {alias}.",
                   where=node.id)  # fmt: skip
    return replace(answer, name=name, message=f"{same}. {answer.message}")
