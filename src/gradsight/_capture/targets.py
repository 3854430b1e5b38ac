"""What a debugger re-runs: a model or function, the last step of a live session, a cell
(``cell_target.CellTarget``) — or nothing, for a tensor's graph. Each target knows which leaves,
modules and variables toggles can name, re-runs with toggles (restoring the user's objects
afterwards), traces a leaf for ``explain``, and tells what a run ran on (``facts.RunFacts``), so a
re-run can say what changed since (an optimizer step between the run shown and the re-run).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..graph import Controls, Graph, LeafControl, Why, WhyReason
from ..runs import RerunError
from ..toggles import Toggles
from . import taint
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
from .specs import at_the_inputs, call_inputs, reaches_of
from .summary import dtype_name
from .train_flags import Flags, flags_note, flags_of, replaying

CUT_INPUTS = (
    "The step's input came out of another graph (a GAN's fake batch, a backbone's features): this re-run starts "
    "the graph at the model's input, as a leaf whose gradient is dL/d input, so the nodes above it are not drawn "
    "and their backward is not run (your graph above is left alone)."
)
NO_RERUN = (
    "This debugger shows a tensor's graph: it cannot re-run the code that made it. For what-ifs, give gradsight "
    "something it can run: gradsight.debugger(model, inputs=batch, loss=...), gradsight.debugger(lambda: "
    "compute_loss()), or a %%gradsight cell."
)
NO_BACKWARD = (
    "{name} is in the graph, but this debugger shows a tensor's graph and runs no backward, so it sees no "
    "gradients: give gradsight the step — gs.debugger(lambda: compute_loss()) or gs.debugger(model, "
    "inputs=batch, loss=...) — to see them."
)


class _NotACell:
    """What ``explain`` asks of every target but a cell (``cell_target.CellTarget``): its code can be
    re-run for a taint trace (but a tensor's graph's), no variable is known cut by its code, and a graph
    whose backward never ran is worded as a tensor's graph (:data:`NO_BACKWARD`)."""

    traceable = True

    def cuts(self) -> Mapping[str, tuple[WhyReason, str]]:
        return {}

    def no_backward(self, name: str) -> str:
        return NO_BACKWARD.format(name=name)


@dataclass
class TensorTarget(_NotACell):
    """``gradsight.debugger(tensor)``: no re-run; leaves are the ``params`` the user named, ``tied`` the
    other paths of a module's shared parameters (:func:`names.leaf_aliases`)."""

    names: Mapping[str, torch.Tensor]
    tied: Mapping[str, str] = field(default_factory=dict)
    traceable = False  # no code to re-run (a class attribute: not a field)

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
class RunnableTarget(_NotACell):
    """A model or function: re-run with toggles; the taint trace re-runs its forward. Made right
    after the first run, where ``gradsight.debugger`` was called: every re-run and trace runs under
    the autocast regions enabled there, as the first run did — the view's re-runs too, and a
    ``rerun`` called inside another autocast region runs without it. Likewise the modules' train/eval
    flags of the first run (the diff's baseline): a ``model.eval()`` since does not change a re-run."""

    spec: RunSpec
    autocast: tuple[Autocast, bool] = field(default_factory=autocast_state)
    training: Flags = field(init=False)

    def __post_init__(self) -> None:
        self.training = flags_of(self.spec.modules)

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        self.spec.rescope()  # the modules as they are now, for the note and the flags set (run() does it too)
        note = flags_note(self.spec.modules, self.training, "the first run")
        with replaying_autocast(self.autocast), replaying(self.spec.modules, self.training):
            result = run(self.spec, watch, toggles)
        return _noted(result, note)

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
            with replaying_autocast(self.autocast), replaying(self.spec.modules, self.training):
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


class LiveTarget(_NotACell):
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
        self.cut_inputs = False  # the last re-run's inputs came out of another graph (specs.at_the_inputs)

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
        # an input out of another graph (a GAN's fake batch, a backbone's features): the re-run's graph
        # starts at it, as a leaf (the graph above is the user's, freed by the step's backward)
        args, kwargs, self.cut_inputs = at_the_inputs(replay.args, replay.kwargs)

        def call() -> Any:  # under the autocast regions the step's forward ran under
            with replaying_autocast(replay.autocast):
                return model(*args, **kwargs)

        modules, names = self._names()
        inputs = call_inputs(args, kwargs)
        names = {**names, **{t: n for n, t in inputs if t not in names}}
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
        assert replay is not None  # _spec raised otherwise
        flags = flags_note(spec.modules, replay.training, f"step {replay.step}")
        with self.session.paused(), replaying(spec.modules, replay.training):
            result = run(spec, watch, toggles)
        self.in_checkpoint = dict(spec.in_checkpoint)
        if result.captured is not None:  # live mode knows no loss: say what was computed
            graph = result.captured.graph
            notes = [rerun_note(replay.step, replay.parameters, self._now(replay)[0])]
            if self.cut_inputs:
                notes.append(CUT_INPUTS)
            if flags is not None:
                notes.append(flags)
            result.captured.graph = replace(graph, notes=(*graph.notes, *notes))
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
            replay: Replay = self.session.last_call  # not None: _spec raised otherwise
            with replaying(spec.modules, replay.training):
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


def _noted(result: RunResult, note: str | None) -> RunResult:
    """``result`` with ``note`` added to its graph's notes (a run that made no graph: as it is)."""
    if note is not None and result.captured is not None:
        graph = result.captured.graph
        result.captured.graph = replace(graph, notes=(*graph.notes, note))
    return result
