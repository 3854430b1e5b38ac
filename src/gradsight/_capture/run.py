"""Runnable debuggers: run forward and backward once, observing everything, perturbing nothing.

One run: bring the spec's names up to date (a parameter replaced since), fork the RNG (the run
sees the same random numbers as the user's next step would, and leaves the RNG as it was), snapshot
module buffers (BatchNorm running stats), requires_grad and training flags, and the generators the
step reaches by name, watch the inputs for in-place edits, record module ranges and source lines
during forward, pick the roots, capture the graph and keep its saved tensors before backward frees
them, hook every node, and differentiate with ``torch.autograd.grad`` — so no ``.grad`` field of
the user's changes (where a reentrant checkpoint refuses it, a plain backward whose ``.grad`` fields
are given back). Buffers, flags, inputs, Python's and NumPy's RNGs: guard.py; the roots and the
graph's notes: roots.py. Everything installed is removed in ``finally``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..graph import Graph, RootGradient, RunInfo
from ..runs import RerunError
from ..toggles import Toggles
from .detach import CallIndex, Detacher
from .differentiate import differentiate, differentiate_by_backward, hidden_note
from .finish import build_with_gradients
from .guard import InputGuard, ModuleGuard, fork_rng, generators_reached
from .hooks import GradRecorder, derivable
from .modules import ModuleTracker, is_compiled
from .no_train import no_backward
from .records import Captured, CaptureOptions, Collected
from .roots import check_grad_shapes, edited_note, inputs_note, no_graph, nonfinite_note, picked_note, roots_of
from .source import SourceTracker
from .store import TensorStore
from .summary import norm_of
from .tracebacks import user_traceback
from .walk import ACCUMULATE_GRAD, assign_ids, collect, gc_paused
from .whatif import EAGER_NOTE, RefusedToggle, WhatIf

_next_seq = torch._C._autograd._get_sequence_nr


@dataclass
class RunSpec:
    """What to run: ``call()`` is the forward; ``loss`` turns outputs into the root."""

    call: Callable[[], Any]
    modules: list[tuple[str, torch.nn.Module]]
    leaf_names: dict[torch.Tensor, str]
    loss: Callable[[Any], Any] | None = None
    grad_output: Any = None
    budget: int = 0
    source_lines: bool = True
    mode: str = "runnable"
    keep_all_below: int = 32 * 2**20
    rng: Any = None  # RNG states of the first run: every later run replays them (same dropout masks)
    # non-leaf tensors the forward reaches (inputs, the function's names): one that retains its grad
    # (retain_grad(), a saliency map) gets it filled by any backward through it — a run gives it back
    retaining: list[torch.Tensor] = field(default_factory=list)
    origin: tuple[str, int] | None = None  # a live step's replay: the user's line that called the model
    # parameters that got their gradient inside a reentrant checkpoint region in the last run (name → norm):
    # no leaves of the graph, yet not missing (explain.finish, explain.explain)
    in_checkpoint: dict[str, float] = field(default_factory=dict)
    what: str = "the model"  # what call() runs, as messages name it: "the model" or "the function"
    # the tensors call() reads that are no parameters (the batch, a function's tensors), by name: a
    # forward that edits one in place (x /= 2) is told; those an earlier run saw edited (their ids)
    # are put back after each later run, so re-runs do not compound the edit (guard.InputGuard)
    inputs: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    edited_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    fresh: str = "create the debugger again with a fresh batch"  # how the notes say to start from one
    # the functions whose names may hold the random generators the step draws from (the function, the
    # loss, the model's forwards): their states go back after each run (guard.generators_reached)
    reaches: tuple[Callable[..., Any], ...] = ()
    # brings modules, leaf_names, inputs, retaining and reaches up to date when the model changed since
    # the last run (a parameter replaced, a layer appended); returns whether it did (specs.Rescope)
    scope: Callable[[RunSpec], bool] | None = None

    def rescope(self) -> bool:
        """Names and modules as the model is now: a parameter replaced after the debugger was made
        (``m[0].weight = nn.Parameter(...)``) or a layer appended is named, and toggles reach it.
        Cheap when nothing changed (ids compared); every run calls it first. Returns whether it changed."""
        if self.scope is None:
            return False
        try:
            return self.scope(self)
        except ValueError as e:  # a lazy module added since: a run would initialize it (specs.py)
            raise RerunError(str(e)) from None


@dataclass
class RunResult:
    captured: Captured | None
    error: str | None = None  # the user's exception, with its traceback
    loss_value: float | None = None
    notes: list[str] = field(default_factory=list)
    # seconds spent in each phase (forward, read graph, hooks, backward, build), for benchmarks/bench_run.py
    phases: dict[str, float] = field(default_factory=dict)


def run(spec: RunSpec, watch: Collection[str] = (), toggles: Toggles | None = None) -> RunResult:
    """Run forward and backward once under observation, with what-if ``toggles`` applied for the run;
    keep the tensors of the nodes in ``watch`` (ids). Raises :class:`RefusedToggle` for a toggle the
    run cannot apply, having changed nothing."""
    spec.rescope()
    spec.in_checkpoint = {}  # this run's, also when it stops before its backward
    whatif = WhatIf(toggles or Toggles(), dict(spec.modules), {n: t for t, n in spec.leaf_names.items()})
    detacher = None
    if whatif.node_detaches():
        try:
            detacher = Detacher(_locate_calls(spec, whatif))
        except RefusedToggle:
            raise
        except Exception as e:
            return RunResult(None, error=user_traceback(e))
    guard = _guard(spec)
    inputs = InputGuard(spec.inputs, spec.edited_inputs)
    retained = [(t, t.grad) for t in spec.retaining if t.retains_grad]
    # The guard inside the toggles: it puts back the flags the forward changed, then the toggles put
    # back their own flips (apply=True: set again below, once the run succeeded).
    with fork_rng(spec), whatif.applied(), guard, inputs, gc_paused(), _giving_back(retained):
        result = _observe(spec, whatif, detacher, guard, watch)
    if whatif.toggles.apply and result.captured is not None and result.error is None:
        whatif.keep()
    note = inputs_note(spec, inputs)
    if note is not None and result.captured is not None:
        graph = result.captured.graph
        result.captured.graph = replace(graph, notes=(*graph.notes, note))
    return result


def _observe(spec: RunSpec, whatif: WhatIf, detacher: Detacher | None, guard: ModuleGuard,
             watch: Collection[str]) -> RunResult:  # fmt: skip
    """The run itself, inside the guards."""
    store = TensorStore(spec.budget)
    tracker = ModuleTracker(spec.modules)
    try:
        sources = SourceTracker(rehome_warnings=True, track_hooks=True) if spec.source_lines else None
        # Frames above this one are not the forward (the line that made the debugger, ipywidgets'
        # dispatch of a Re-run): ops no user frame made (a bare nn.Sequential's) get no line — the
        # module path names them — or, replaying a live step, the user's line that called the model.
        if sources is not None:
            sources.barrier, sources.origin = sys._getframe(), spec.origin
        start = time.perf_counter()
        first_seq = _next_seq()  # nodes numbered below existed before this run (the user's graph)
        try:
            with sources or _nothing(), whatif.forward(), detacher or _nothing(), no_backward():
                output = spec.call()
                roots, grads, kind, loss_value = roots_of(spec, output)
        except Exception as e:
            return RunResult(None, error=user_traceback(e))
        finally:
            tracker.close()
            if sources is not None:
                sources.barrier = None  # this frame holds the tracker: no cycle to outlive the run
        if not any(r.grad_fn is not None for r in roots):
            info = RunInfo(mode=spec.mode, loss=loss_value)  # type: ignore[arg-type]  # the loss is computed
            graph = Graph(message=no_graph(roots, whatif.toggles), run=info)
            return RunResult(Captured(graph), loss_value=loss_value)
        phases = {"forward": time.perf_counter() - start}
        result = _backward(spec, store, tracker, sources, roots, grads, kind, loss_value, watch, phases, guard,
                           first_seq)  # fmt: skip
        result.phases = phases
        drawn = None if result.captured is None else result.captured.graph  # its gradients word the NaN note
        notes = [n for n in (nonfinite_note(loss_value, drawn), picked_note(spec, output, roots),
                             edited_note(spec, guard)) if n is not None]  # fmt: skip
        if whatif.eager and any(is_compiled(m) for _, m in spec.modules):  # why its graph shows more nodes
            notes.append(EAGER_NOTE)
        if notes and result.captured is not None:
            graph = result.captured.graph
            result.captured.graph = replace(graph, notes=(*graph.notes, *notes))
        return result
    finally:
        tracker.close()


def _guard(spec: RunSpec) -> ModuleGuard:
    """What puts the user's modules back after a forward of ``spec``: buffers, flags, generators."""
    return ModuleGuard(spec.modules, flags=True, generators=generators_reached(spec.reaches))


def _locate_calls(spec: RunSpec, whatif: WhatIf) -> dict[int, set[int]]:
    """A first pass of the same forward: which top-level call produced each node to detach."""
    wanted = set(whatif.node_detaches())
    calls = CallIndex()
    whatif = WhatIf(replace(whatif.toggles, apply=False), whatif.modules, whatif.leaves)  # the run applies them
    inputs = InputGuard(spec.inputs, spec.edited_inputs)
    with fork_rng(spec), whatif.applied(), _guard(spec), inputs, gc_paused():
        tracker = ModuleTracker(spec.modules)
        try:
            with whatif.forward(), calls:
                roots = [r for r in roots_of(spec, spec.call())[0] if r.grad_fn is not None]
        finally:
            tracker.close()
        collected, order = collect([r.grad_fn for r in roots], CaptureOptions(
            leaf_names=spec.leaf_names, module_of=tracker.module_of, stats=False))  # fmt: skip
        ids = assign_ids(collected)
        targets: dict[int, set[int]] = {}
        for i, node_id in enumerate(ids):
            if node_id in wanted:
                where = calls.producer.get(order[i])
                if where is None:
                    module = node_id.rpartition("/")[0]
                    instead = f" (detach=[{module!r}])" if module in whatif.modules else ""
                    raise RefusedToggle(
                        f"cannot detach {node_id} alone: autograd created it inside another call (like the "
                        f"TBackward0 inside F.linear); detach its module's output instead{instead}"
                    )
                targets.setdefault(where[0], set()).add(where[1])
                wanted.discard(node_id)
    if wanted:
        raise RefusedToggle(
            f"no node {', '.join(sorted(wanted))} in this run's graph (with the other toggles applied): detach a node "
            "of the graph shown ([n.id for n in dbg.graph.nodes]), or leave out the toggles that remove it"
        )
    return targets


def _backward(spec: RunSpec, store: TensorStore, tracker: ModuleTracker, sources: SourceTracker | None,
              roots: list[torch.Tensor], grads: list[torch.Tensor | None], kind: RootGradient,
              loss_value: float | None, watch: Collection[str], phases: dict[str, float],
              guard: ModuleGuard, first_seq: int = 0) -> RunResult:  # fmt: skip
    # A graph that reaches into one the user built before this run (a tensor computed earlier, its
    # nodes numbered below first_seq): backward would free the user's saved tensors, and the user's
    # own backward through them would then fail — retain the graph.
    lap = _Lap(phases)
    pairs = [(r, g) for r, g in zip(roots, grads, strict=True) if r.grad_fn is not None]
    opts = CaptureOptions(
        leaf_names=spec.leaf_names, store=store, module_of=tracker.module_of,
        source_of=None if sources is None else sources.source_of,
    )  # fmt: skip
    collected, order = collect([r.grad_fn for r, _ in pairs], opts)
    ids = assign_ids(collected)
    retain = any(0 <= q < first_seq for q in collected.seqs)
    lap("read graph")
    if store.kept_bytes + collected.gradient_bytes() <= spec.keep_all_below:
        keep: Collection[int] = range(len(ids))
    else:  # big graph: keep only what the user inspects (see config.Options.keep_all_below)
        keep = {i for i, node_id in enumerate(ids) if node_id in watch}
        store.keep_only(keep)
    recorder = GradRecorder(store, keep)
    error = None
    hidden: dict[torch.Tensor, torch.Tensor] = {}
    try:
        leaf_index = [i for i, name in enumerate(collected.names) if name == ACCUMULATE_GRAD]
        leaves = [order[i].variable for i in leaf_index]
        # leaves=False: differentiate asks for the leaves, their AccumulateGrad nodes never run
        derived = _derived(collected, keep, order, sources, first_seq)
        recorder.install(order, collected.names, leaves=False, derived=derived)
        del order  # hold no node objects while backward runs (pitfall 3)
        lap("hooks")
        try:
            check_grad_shapes(spec, roots, grads)
            if "checkpoint" in collected.opaque:  # reentrant checkpoint: autograd.grad is refused
                named = [t for t in spec.leaf_names if t.is_leaf]  # tensors the code reaches by name, too
                received = differentiate_by_backward(pairs, leaves, [*guard.parameters(), *named], hidden, retain)
            else:
                received = differentiate(pairs, leaves, retain)
        except Exception as e:
            error = user_traceback(e)
            received = [None] * len(leaves)
        for i, g in zip(leaf_index, received, strict=True):
            if g is not None:
                recorder.executed.add(i)
                recorder.grad_in[i] = (store.offer((i, "grad-in:0"), g),)
        lap("backward")
    finally:
        recorder.close()
    lap("hooks")
    run_info = RunInfo(mode=spec.mode, root_gradient=kind, loss=loss_value)  # type: ignore[arg-type]
    graph = build_with_gradients(collected, recorder, store, run_info)
    spec.in_checkpoint = {spec.leaf_names[p]: norm_of(g) or 0.0 for p, g in hidden.items() if p in spec.leaf_names}
    if hidden:
        graph = replace(graph, notes=(*graph.notes, hidden_note(hidden, spec.leaf_names)))
    lap("build")
    return RunResult(Captured.of(graph, collected, store), error=error, loss_value=loss_value)


class _Lap:
    """Adds the seconds since the last call to ``phases[name]``."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


def _derived(c: Collected, keep: Collection[int], order: Sequence[Any],
             sources: SourceTracker | None, first_seq: int = 0) -> dict[int, tuple[int, int]]:  # fmt: skip
    """The nodes that need no hook (hooks.derivable), knowing which children have tensor hooks: the
    source tracker saw them registered during the forward; a leaf's are on its tensor. Without the
    tracker (source_lines=False) hooks cannot be seen: every node is hooked. A node's own prehooks
    (``grad_fn.register_prehook``) are invisible from Python: nodes of a graph the user built before
    the run count as hooked; one the forward hooks that way is a documented limit (ARCHITECTURE.md)."""
    if sources is None:
        return {}
    hooked = {i for i, n in enumerate(order) if n in sources.hooked}
    hooked |= {i for i, q in enumerate(c.seqs) if 0 <= q < first_seq}
    sources.hooked.clear()  # hold no node objects while backward runs (pitfall 3)
    hooked |= {i for i, name in enumerate(c.names) if name == ACCUMULATE_GRAD and order[i].variable._backward_hooks}
    return derivable(c, keep, hooked)


@contextmanager
def _giving_back(retained: list[tuple[torch.Tensor, torch.Tensor | None]]) -> Iterator[None]:
    """The ``.grad`` of each non-leaf tensor that retains its grad, as before the run."""
    try:
        yield
    finally:
        for t, grad in retained:
            t.grad = grad


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def traced_forward(spec: RunSpec, toggles: Toggles) -> Callable[[], list[torch.Tensor]]:
    """The forward (and loss) of ``spec`` with ``toggles``, replaying the first run's RNG, restoring
    everything afterwards: what a taint trace runs. Returns the roots."""

    def forward() -> list[torch.Tensor]:
        whatif = WhatIf(replace(toggles, apply=False), dict(spec.modules), {n: t for t, n in spec.leaf_names.items()})
        inputs = InputGuard(spec.inputs, spec.edited_inputs)
        with fork_rng(spec), whatif.applied(), _guard(spec), inputs, whatif.forward():
            roots, _, _, _ = roots_of(spec, spec.call())
            return roots

    return forward
