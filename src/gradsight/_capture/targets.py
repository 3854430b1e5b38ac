"""What a debugger re-runs: a model or function, the last step of a live session, a cell
(``cell_target.CellTarget``) — or nothing, for a tensor's graph. Each target knows which leaves,
modules and variables toggles can name, re-runs with toggles (restoring the user's objects
afterwards), explains missing gradients, and tells what a run ran on (``facts.RunFacts``), so a
re-run can say what changed since (an optimizer step between the run shown and the re-run).
"""

from __future__ import annotations

import traceback
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from ..graph import Controls, Graph, LeafControl, Why, WhyReason
from ..runs import RerunError
from ..toggles import Toggles, suggest
from . import taint, why_extreme, why_failed
from . import why as why_mod
from .cell_cuts import cut_results
from .cell_target import CellTarget
from .facts import (
    STEP,
    Autocast,
    RunFacts,
    Versions,
    autocast_state,
    changed_since,
    renormalized,
    replaying_autocast,
    tracked_parameters,
    versions,
)
from .followed import model_names
from .live_notes import rerun_note
from .live_step import Replay
from .names import leaf_aliases
from .outputs import flatten_tensors
from .run import RunResult, RunSpec, run
from .specs import call_inputs, reaches_of
from .summary import dtype_name

NO_RERUN = (
    "This debugger shows a tensor's graph: it cannot re-run the code that made it. For what-ifs, give gradsight "
    "something it can run: gradsight.debugger(model, inputs=batch, loss=...), gradsight.debugger(lambda: "
    "compute_loss()), or a %%gradsight cell."
)


class Target(Protocol):
    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult: ...

    def leaves(self) -> Mapping[str, torch.Tensor | None]: ...

    def aliases(self) -> Mapping[str, str]: ...

    def controls(self, graph: Graph) -> Controls: ...

    def trace(self, name: str, toggles: Toggles) -> Why | None: ...

    def facts(self, graph: Graph) -> RunFacts | None: ...

    def changed(self, since: RunFacts) -> tuple[str, ...]: ...


def finish(target: Target, graph: Graph, toggles: Toggles, failure: str | None = None,
           inside: Mapping[str, float] | None = None) -> Graph:  # fmt: skip
    """Add what the view needs for what-ifs: controls, and why leaves got no gradient (``failure``:
    the run's backward raised this traceback; ``inside``: :attr:`RunFacts.in_checkpoint`)."""
    traceable = not isinstance(target, TensorTarget)
    failure = failure or why_failed.cell_failure(graph)
    every = target.aliases()  # tied weights' other paths: graph.find() finds them, requires_grad toggles use them
    aliases = every if toggles.requires_grad else {}
    missing = (why_mod.explain_all(target.leaves(), toggles, graph, traceable, aliases)
               if graph.nodes or graph.message else ())  # fmt: skip
    if failure:
        missing = tuple(why_failed.failed(w.name, graph, failure) or w for w in missing)
    missing = tuple(w for w in missing if w.name not in (inside or {}))
    if isinstance(target, CellTarget):
        graph = _cut_worded(graph, cut_results(target.code, target.ns))
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


def explain(target: Target, graph: Graph, toggles: Toggles, name: str, failure: str | None = None,
            inside: Mapping[str, float] | None = None) -> Why:  # fmt: skip
    """Why ``name`` got no gradient (or a zero one) in ``graph`` (``inside``: :attr:`RunFacts.in_checkpoint`).
    Another path of a shared parameter (``head.weight`` tied to ``emb.weight``) is answered for the name
    the graph shows it under."""
    leaves, aliases = target.leaves(), target.aliases()
    known = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
    shown = aliases.get(name) if name not in leaves and name not in known else None
    if shown is not None:
        return _as_alias(name, shown, graph, explain(target, graph, toggles, shown, failure, inside))
    if name not in leaves and name not in known:
        where = "[n.leaf.name for n in dbg.graph.nodes if n.leaf] lists them"
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
        return _as_alias(name, alias, graph, explain(target, graph, toggles, alias, failure, inside))
    if isinstance(target, CellTarget):
        off = cut_results(target.code, target.ns).get(name)
        value = leaves.get(name)
        if off is not None and value is not None and value.grad_fn is None and not value.requires_grad:
            return Why(name, *off)
    traceable = not isinstance(target, TensorTarget)
    others = why_mod.other_names(leaves, aliases).get(name, ())
    quick = why_mod.quick(name, leaves.get(name), toggles, graph, traceable=traceable, others=others, values=leaves)
    if quick is not None and quick.reason == "unknown" and not graph.nodes:
        # no graph at all, which says nothing of this leaf: where its own path breaks is what a trace finds
        traced = _trace(target, name, toggles)
        return traced if traced is not None and traced.reason != "unknown" else quick
    if quick is not None:
        return quick
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == name), None)
    if node is not None and node.executed is None:
        if isinstance(target, CellTarget):
            text = (f"{name} is in the graph, but no backward ran in this cell, so nothing got a gradient yet: "
                    "add loss.backward() to the cell (or use a runnable debugger) to see gradients.")  # fmt: skip
        else:  # a debugger of a tensor shows its graph as it stands
            text = (f"{name} is in the graph, but this debugger shows a tensor's graph and runs no backward, so it "
                    "sees no gradients: give gradsight the step — gs.debugger(lambda: compute_loss()) or "
                    "gs.debugger(model, inputs=batch, loss=...) — to see them.")  # fmt: skip
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


@dataclass
class TensorTarget:
    """``gradsight.debugger(tensor)``: no re-run; leaves are the ``params`` the user named, ``tied`` the
    other paths of a module's shared parameters (:func:`names.leaf_aliases`)."""

    names: Mapping[str, torch.Tensor]
    tied: Mapping[str, str] = field(default_factory=dict)

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        raise RerunError(NO_RERUN)

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        return dict(self.names)

    def aliases(self) -> Mapping[str, str]:
        return dict(self.tied)

    def controls(self, graph: Graph) -> Controls:
        return Controls(rerun=False, note=NO_RERUN)

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        return None

    def facts(self, graph: Graph) -> RunFacts | None:
        return None

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        return ()


@dataclass
class RunnableTarget:
    """A model or function: re-run with toggles; the taint trace re-runs its forward. Made right
    after the first run, where ``gradsight.debugger`` was called: every re-run and trace runs under
    the autocast regions enabled there, as the first run did — the view's re-runs too, and a
    ``rerun`` called inside another autocast region runs without it."""

    spec: RunSpec
    autocast: tuple[Autocast, bool] = field(default_factory=autocast_state)

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        with replaying_autocast(self.autocast):
            return run(self.spec, watch, toggles)

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        return {name: t for t, name in self.spec.leaf_names.items()}

    def aliases(self) -> Mapping[str, str]:
        """The other paths of shared parameters (tied weights) → the name each is shown under."""
        return leaf_aliases(self.spec.modules, self.spec.leaf_names)

    def controls(self, graph: Graph) -> Controls:
        """The model as it is now (:meth:`RunSpec.rescope`): a layer appended since the last run can be
        toggled at once. Raises :class:`RerunError` for a lazy layer appended since."""
        self.spec.rescope()
        in_graph = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
        leaves = tuple(LeafControl(name, bool(t.requires_grad), name in in_graph, dtype_name(t.dtype))
                       for name, t in self.leaves().items() if t is not None)  # fmt: skip
        modules = tuple(name for name, _ in self.spec.modules if name)
        return Controls(rerun=True, leaves=leaves, modules=modules, detach_nodes=True)

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        leaf = self.leaves().get(name)
        if leaf is None:
            return None
        from .run import traced_forward

        forward = traced_forward(self.spec, toggles)

        def under_autocast() -> list[torch.Tensor]:
            with replaying_autocast(self.autocast):
                return forward()

        return taint.trace(name, leaf, under_autocast, taint.namer_of(self.spec.modules))

    def facts(self, graph: Graph) -> RunFacts:
        """What a run now runs on: the model as it is now (:meth:`RunSpec.rescope`: a parameter
        replaced since is a parameter, not an input) and the batch, or the function's tensors."""
        self.spec.rescope()
        parameters = list(tracked_parameters(self.spec.modules))  # not the weights Embedding(max_norm) edits
        inputs = [t for _, t in self.spec.inputs]
        return RunFacts(None, versions(parameters), versions(inputs), dict(self.spec.in_checkpoint))

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        now = self.facts(Graph())
        return changed_since(since, now.parameters, now.inputs)


class LiveTarget:
    """A live session: a re-run replays the last recorded step's call, with the gradient its output
    received (the model's vector–Jacobian product), so no loss function is needed. Leaves and modules
    are the model's as they are now (a submodule replaced since the debugger attached is named, and
    the replaced one not kept). As a runnable re-run, it tells an in-place edit of the step's inputs
    (put back after later re-runs: ``edited_inputs`` lasts while the step is the last) and puts back
    the generators the model's forwards reach by name."""

    def __init__(self, session: Any, model: torch.nn.Module, budget: int, source_lines: bool) -> None:
        self.session = session
        self.model = model
        self.budget = budget
        self.source_lines = source_lines
        self.in_checkpoint: dict[str, float] = {}  # the last re-run's (RunSpec.in_checkpoint)
        # inputs of the last step a re-run saw edited in place: put back after each later re-run (RunSpec)
        self.edited_inputs: dict[int, torch.Tensor] = {}

    def _names(self) -> tuple[list[tuple[str, torch.nn.Module]], dict[torch.Tensor, str]]:
        return model_names(self.model)

    def _spec(self) -> RunSpec:
        replay: Replay | None = self.session.last_call
        if replay is None:
            raise RerunError(
                "Nothing to re-run yet: run a training step (output = model(batch); loss.backward()) first; "
                "the live debugger re-runs the last step it recorded."
            )
        model = self.model

        def call() -> Any:  # under the autocast regions the step's forward ran under
            with replaying_autocast(replay.autocast):
                return model(*replay.args, **replay.kwargs)

        modules, names = self._names()
        inputs = call_inputs(replay.args, replay.kwargs)
        held = {id(t) for _, t in inputs}  # an earlier step's batch is let go
        self.edited_inputs = {i: t for i, t in self.edited_inputs.items() if i in held}
        for t in replay.edited:  # the step's own forward edited it: a re-run must not edit the batch again
            self.edited_inputs.setdefault(id(t), t)
        return RunSpec(call=call, modules=modules, leaf_names=names, grad_output=replay.grads, budget=self.budget,
                       source_lines=self.source_lines, rng=replay.rng, origin=replay.origin, inputs=inputs,
                       edited_inputs=self.edited_inputs, reaches=reaches_of(modules, None),
                       retaining=[t for _, t in inputs if not t.is_leaf],
                       fresh="run another step on a fresh batch (a re-run replays the last step)")  # fmt: skip

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        spec = self._spec()
        replay: Replay | None = self.session.last_call
        with self.session.paused():
            result = run(spec, watch, toggles)
        self.in_checkpoint = dict(spec.in_checkpoint)
        if result.captured is not None and replay is not None:  # live mode knows no loss: say what was computed
            graph = result.captured.graph
            note = rerun_note(replay.step, replay.parameters, self._now(replay)[0])
            result.captured.graph = replace(graph, notes=(*graph.notes, note))
        return result

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        return {name: t for t, name in self._names()[1].items()}

    def aliases(self) -> Mapping[str, str]:
        """The other paths of shared parameters (tied weights), as the model is now."""
        return leaf_aliases(*self._names())

    def controls(self, graph: Graph) -> Controls:
        modules, names = self._names()
        base = RunnableTarget(RunSpec(call=lambda: None, modules=modules, leaf_names=names)).controls(graph)
        if self.session.last_call is None:
            return replace(
                base, rerun=False, note="Run a training step first: the live debugger re-runs the last step."
            )
        return base

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        leaf = self.leaves().get(name)
        if leaf is None or self.session.last_call is None:
            return None
        from .run import traced_forward

        with self.session.paused():
            spec = self._spec()
            return taint.trace(name, leaf, traced_forward(spec, toggles), taint.namer_of(spec.modules))

    def _now(self, replay: Replay) -> tuple[Versions, Versions]:
        """The versions of what a re-run of ``replay`` would run on now: the model's parameters (as
        named now) and the step's inputs."""
        modules, names = self._names()
        renormed = renormalized(m for _, m in modules)
        parameters = [p for p in names if id(p) not in renormed]  # as the step's (live.py)
        return versions(parameters), versions(flatten_tensors((replay.args, replay.kwargs)))

    def facts(self, graph: Graph) -> RunFacts | None:
        """A step's: what it ran on (its forward's); a re-run's: what it ran on, the step replayed now."""
        replay: Replay | None = self.session.last_call
        if replay is None:
            return None
        if graph.run.mode == "live":
            if graph.run.step != replay.step:  # published after a later step's end (another thread)
                return None
            return RunFacts(replay.step, replay.parameters, replay.inputs, replay.in_checkpoint)
        return RunFacts(replay.step, *self._now(replay), dict(self.in_checkpoint))

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        replay: Replay | None = self.session.last_call
        if replay is None:
            return ()
        if replay.step != since.step:  # a re-run replays the last step, not the one shown
            return (STEP,)
        return changed_since(since, *self._now(replay))
