"""A live step captured in its forward and waiting for its backward passes: the graph's hooks, the
end-of-pass callback (queued by the first hook of each pass that runs the graph), the ``.grad``
history its leaves add to once the step is published, and what a re-run of it replays
(:class:`Replay`: its call, RNG and autocast state, and what it ran on).

A step may differentiate its forward's graph more than once: a gradient penalty
(``torch.autograd.grad(..., create_graph=True)``, then ``loss.backward()``), several losses
(``l1.backward(retain_graph=True)``, then ``l2.backward()``). The recorder stays open across the
passes: a node that ran in any of them ran, and shows the gradient of the last pass that reached it.
A pass that runs a node of the graph and frees it is the step's last; until then (the graph kept)
the step stays open, and a later pass that reaches only its leaves counts too (:class:`StepRecorder`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..graph import Graph, RunInfo, TensorSummary
from ..inspection import GradStep
from .facts import Autocast, Versions
from .finish import build_with_gradients
from .hooks import grad_meta, with_norm
from .live_history import GradHistories
from .live_notes import accumulation_note, added_note, failure, last_exception, nonzero, raised_in_backward, reaches
from .live_optimizers import Optimizers
from .live_recorder import StepRecorder, graph_kept
from .records import Collected
from .store import TensorStore
from .summary import meta_of, norm_of
from .threads import alive, backward_elsewhere, thread_serial
from .train_flags import Flags
from .walk import gc_paused

_graph_task_id = torch._C._current_graph_task_id


def _floats(named: Sequence[tuple[str, Any]]) -> dict[str, float | None]:
    """Names with 0-d tensors, read in one sync (None where that fails)."""
    try:
        values = torch.stack([n.float().cpu() for _, n in named]).tolist() if named else []
    except RuntimeError:
        return dict.fromkeys((name for name, _ in named), None)
    return dict(zip((name for name, _ in named), values, strict=True))


@dataclass
class Replay:
    """What a re-run of a live step replays — its call's inputs, RNG state, autocast regions and the
    outputs' gradients (None unless all were kept) — with the user's line of its forward, and what
    the step ran on: the parameters' and the inputs' versions at its forward's end (a re-run compares
    them with the tensors' now), and the parameters that got a gradient inside a reentrant checkpoint
    region (name → ``.grad`` norm: no leaves of the graph, yet not missing)."""

    step: int
    args: Any
    kwargs: Any
    rng: Any
    grads: list[torch.Tensor] | None
    origin: tuple[str, int] | None
    autocast: tuple[Autocast, bool] = ((), True)
    parameters: Versions = ()
    inputs: Versions = ()
    in_checkpoint: Mapping[str, float] = field(default_factory=dict)
    edited: tuple[torch.Tensor, ...] = ()  # inputs its forward edited in place: re-runs copy and put them back
    training: Flags = ()  # its modules' training flags: a re-run replays them (train_flags.py)


UNFINISHED_NOTE = (
    "A backward pass over this step stopped before it ended (it raised, or was interrupted): the "
    "gradients shown include what it recorded before it stopped, which never reached .grad."
)


def earlier_calls_note(calls: int) -> str:
    earlier = "an earlier call" if calls == 1 else f"{calls} earlier calls"
    return (
        f"This step's backward also went through {earlier} of the model (called more than once before "
        "one backward: a siamese or contrastive step), not drawn: the graph shows the last call; a "
        "leaf's .grad holds what every call gave it."
    )


def passes_note(passes: int) -> str:
    return (
        f"This step ran {passes} backward passes (a gradient penalty, several losses with "
        "retain_graph=True): a node ran if any pass ran it, and shows the gradient of the last pass "
        "that reached it (a re-run replays the outputs' last); a leaf's .grad history, its .grad "
        "after the last pass."
    )


class LiveStep:
    """``count``: the session's step numbers (:meth:`.live_mark.Numbers.count`); the step takes one when
    its first pass begins, or, if none did, when its failure is shown (its backward raised above it)."""

    def __init__(self, count: Callable[..., int], collected: Collected, store: TensorStore,
                 pass_ended: Callable[[LiveStep, bool], None], keep: Collection[int]) -> None:  # fmt: skip
        self.number = 0  # the training step it is: 0 until a backward pass reaches it
        self._count = count
        self.collected = collected
        self.store = store
        self.recorder = StepRecorder(store, keep, on_first=self._queue_pass_end)
        self.leaves: list[tuple[int, torch.Tensor, str | None]] = []  # (node index, leaf, its name)
        self.thread = 0  # the thread whose forward it is (its next call of the model ends the step)
        self.serial = thread_serial()  # that thread, told apart from a later one given the same ident
        self.started = 0.0  # when its forward began (time.monotonic)
        self.forward_time = 0.0  # its forward's duration
        self.backward_time = 0.0  # its ended passes' durations, gradsight's work included
        self.pass_started = 0.0  # when the running pass's first hook ran (a later cell may run it)
        self.passes = 0  # backward passes over its graph that ended
        self.grad_norms: list[float | None] = []  # each leaf's .grad norm after the last pass
        self.errors: list[str] = []  # what failed in a pass or in publishing it: the graph says so
        self.closed = False  # (under the session's lock) published or dropped: later passes do nothing
        self.recalled = False  # its thread called the model again since its last pass: see recall()
        self.unfinished = False  # a pass began (its first hook ran) and has not ended: it may have raised
        # (args, kwargs, rng state, user's line, autocast_state()) of its forward
        self.call: tuple[Any, Any, Any, Any, Any] | None = None
        self.parameters: Versions = ()  # the named parameters' versions at its forward's end
        self.inputs: Versions = ()  # its call's input tensors' versions then
        self.edited: list[torch.Tensor] = []  # those of its inputs its forward edited in place
        self.training: Flags = ()  # its modules' training flags as its forward began
        # Named leaves outside the graph, in a graph with a reentrant checkpoint region: its backward
        # differentiates the region on its own, so its parameters are no leaves of this graph. Each
        # with its .grad then (a weak reference) and that .grad's version: one its passes changed got
        # a gradient in the region (in_checkpoint, name -> .grad norm).
        self.hidden: list[tuple[torch.Tensor, str, Any, int]] = []
        self.in_checkpoint: dict[str, float] = {}
        self.outputs: list[tuple[int, int]] = []  # (root node index, output_nr) per output tensor
        # Each leaf's .grad after the last pass (node index -> shape, dtype and norm): the graph's
        # LeafInfo.grad (the walk read it in the forward: the step before's, or None)
        self.grad_summaries: dict[int, TensorSummary | None] = {}
        # Named leaves whose .grad held something when the first pass began: name -> its norm (a 0-d
        # tensor, read when the step is published: no sync inside the backward) and whether that .grad
        # is the one the last optimizer step left (no zero_grad() since: accumulating across steps)
        self.held: dict[str, tuple[Any, bool]] | None = None
        self.optimizers: Optimizers | None = None  # those seen stepping: what .grad held at their last step
        self.roots: frozenset[tuple[str, int]] = frozenset()  # its outputs' nodes (live_notes.node_key)
        self.exception_before = id(last_exception())  # a backward that raises: is the shell's exception new?
        self.failed: str | None = None  # its backward raised (the view's error), set when it is retired
        self._failure_note = ""
        self._pass_ended = pass_ended
        self.earlier_calls = 0  # captured calls of the model its passes also ran, not in its graph (join)

    def join(self, earlier: LiveStep) -> None:
        """A pass over this step also ran ``earlier``, a call of the model captured before this one (a
        siamese step): one step. Unless this graph holds that call's outputs (a recurrent call on its
        own output), the graph says a call of the step is not drawn."""
        drawn = set(zip(self.collected.names, self.collected.seqs, strict=True))
        if not earlier.roots <= drawn:
            self.earlier_calls += 1

    def recall(self) -> None:
        """Its thread called the model again: a later pass that reaches only the leaves belongs to that
        forward (the next iteration of a retain_graph loop), so it no longer counts for this step; one
        that runs a node of this step's graph still does (WGAN-GP: D(interp)'s graph differentiated
        again after D(real) and D(fake))."""
        self.recalled = True
        self.recorder.open = False

    def _queue_pass_end(self) -> None:
        # Runs inside the first hook of each pass over this step's graph; the callback runs when the
        # pass ends (the engine drops it when the pass raises: the next pass queues its own). The first
        # pass numbers the step: the number of this pass (one another call of the model in it took already).
        self.pass_started = time.monotonic()
        self.unfinished = True
        if not self.number:
            self.number = self._count()
        if self.held is None:
            self._read_held()
        torch.autograd.Variable._execution_engine.queue_callback(self._end_pass)

    def _read_held(self) -> None:
        """What the named leaves' ``.grad`` holds as the step's first pass begins (its first hook is a
        node of the graph, above every leaf: no AccumulateGrad of the step ran yet). A nonzero one is
        accumulated into by this step (no ``zero_grad()`` since the last). Norms as 0-d tensors: no
        sync in the user's backward; ``.grad`` None or zeros (``zero_grad(set_to_none=False)``) is no
        accumulation. Whether each is what ``.grad`` held at the last optimizer step (:meth:`Optimizers.kept`)."""
        held: dict[str, tuple[Any, bool]] = {}
        optimizers = self.optimizers
        try:
            for _, leaf, name in self.leaves:
                grad = leaf.grad if name is not None else None
                meta = grad_meta(grad)
                if grad is not None and name is not None and meta is not None and meta[4] is not None:
                    held[name] = (meta[4], optimizers is not None and optimizers.kept(leaf, grad))
        except Exception:  # a courtesy: never break the user's backward
            held = {}
        self.held = held

    def _end_pass(self) -> None:
        # The engine's callback, in the user's backward: a pass that ran the graph and freed it is the
        # step's last; after one that kept it (or reached only leaves) more may come.
        self.unfinished = False
        try:
            last = not graph_kept() and self.recorder.ran_graph()
        except Exception:
            last = False
        if not last:
            self.recorder.open = not self.recalled
        self._pass_ended(self, last)

    def read_grads(self) -> None:
        """Each named leaf's ``.grad`` norm now, at the end of a pass (the optimizer's ``zero_grad()``
        may clear it before the step is published), and each leaf's ``.grad`` summary (shape, dtype,
        norm: the graph's ``LeafInfo.grad``)."""
        norms: list[float | None] = []
        summaries: dict[int, TensorSummary | None] = {}
        for i, leaf, name in self.leaves:
            grad = leaf.grad
            norm = None if grad is None else norm_of(grad)  # sparse (embeddings), complex: norm_of copes
            norms.append(norm if name is not None else None)
            summaries[i] = None if grad is None else meta_of(grad) if norm is None else with_norm(meta_of(grad), norm)
        self.grad_norms = norms
        self.grad_summaries = summaries
        held, optimizers = self.held, self.optimizers
        if held and optimizers is not None:  # its backward added to a used .grad: the next optimizer step decides
            optimizers.expect(self.number, [(leaf, name, held[name][0]) for _, leaf, name in self.leaves
                                            if name is not None and name in held and held[name][1]])  # fmt: skip
        for leaf, name, before, version in self.hidden:
            grad = leaf.grad
            if grad is not None and (before is None or before() is not grad or grad._version != version):
                self.in_checkpoint[name] = norm_of(grad) or 0.0

    def watch_hidden(self, leaf_names: Mapping[torch.Tensor, str]) -> None:
        """In a graph with a reentrant checkpoint region, note the ``.grad`` of each named leaf that
        is not in the graph, to tell afterwards which of them the region's own backward reached."""
        if "checkpoint" not in self.collected.opaque:
            return
        drawn = {id(leaf) for _, leaf, _ in self.leaves}
        for leaf, name in leaf_names.items():
            if id(leaf) not in drawn and leaf.requires_grad:
                grad = leaf.grad
                before = None if grad is None else weakref.ref(grad)
                self.hidden.append((leaf, name, before, -1 if grad is None else grad._version))

    def stopped(self, here: int) -> bool:
        """Did a pass over the step stop without ending (it raised, or was interrupted), seen from
        thread ``here`` outside any backward: the step's own thread (whose backward is over, since it
        runs this) or a thread that is gone."""
        return (self.unfinished and _graph_task_id() == -1 and (self.thread == here or not alive(self.thread))
                and not backward_elsewhere())  # fmt: skip

    def in_flight(self) -> bool:
        """Did a pass over the step begin and not end, while another thread is inside a backward call
        (the pass may be running there: a worker thread the user started, not yet joined)?"""
        return self.unfinished and backward_elsewhere()

    def raised_above(self) -> bool:
        """Did the backward the shell last showed an error for (since the step's forward) run over the
        step's graph and raise above it — in the loss, before any of the step's hooks ran? Only a shell
        (IPython) keeps the exception: without one, nothing tells this from a step with no backward."""
        if self.passes or self.unfinished or self.recorder.executed:
            return False
        e = raised_in_backward(self.exception_before)
        return e is not None and reaches(e, self.roots)

    def fail(self) -> None:
        """The step's backward raised: read ``.grad`` as it is (no pass end read it) and say why, in
        the view's error (``failed``) and a note of the graph."""
        if not self.number:  # no pass reached it (the loss's backward raised above it): a step all the same
            self.number = self._count(new=True)
        self.read_grads()
        e = raised_in_backward(self.exception_before)
        self.failed, self._failure_note = failure(self.number, e, reached=bool(self.recorder.executed))

    def abandon(self) -> None:
        self.recorder.close()
        self.recorder.unlink()
        self.store.release()

    def publish(self, history: GradHistories, error: Callable[[BaseException], str], *,
                failed: bool = False, optimizers: Optimizers | None = None
                ) -> tuple[Graph, Replay | None] | None:  # fmt: skip
        """The graph of all its passes (None: building it failed, told through ``error``, which
        returns the text to show), its leaves' ``.grad`` added to ``history``, and what a re-run of it
        replays (None: it has no call, or the extras failed: the graph says so). ``failed``: a pass
        raised (:meth:`stopped`): the graph and the view say with what. ``optimizers``: those seen
        stepping, for a note on the parameters that got a gradient but are in none of them."""
        if failed:
            try:
                self.fail()
            except Exception as e:
                self.errors.append(error(e))
        # The cyclic GC paused while gradsight builds (~30 objects per node, young while it works):
        # left on, each captured step's transient objects were promoted and set off a full collection
        # of the user's whole session every few steps (13 in 40 steps of a 1k-node transformer, a
        # quarter of the time). Not promoted after (see gc_paused): the next young collection sees them.
        with gc_paused(promote=False):
            try:
                graph = self.graph()
            except Exception as e:
                error(e)
                self.store.release()
                return None
            replay = None
            try:  # the history, the re-run's call and the .grad notes are extras: the step shows all the same
                graph = self.record_history(history, graph)
                replay = self.replay() if self.call is not None else None
                graph = self._with_grad_notes(graph, optimizers)
            except Exception as e:
                self.errors.append(error(e))
        if self.errors:
            graph = replace(graph, run=replace(graph.run, errors=(*graph.run.errors, *self.errors)))
        return graph, replay

    def graph(self) -> Graph:
        """The graph of all its passes, with what it needs saying: a pass that raised or did not end,
        several passes."""
        run = RunInfo(mode="live", step=self.number)
        leaves = self.collected.leaves  # each leaf's .grad after the last pass, not as the forward found it
        for i, summary in self.grad_summaries.items():
            leaf = leaves[i]
            if leaf is not None:
                leaves[i] = replace(leaf, grad=summary)
        graph = build_with_gradients(self.collected, self.recorder.snapshot(), self.store, run)
        notes = [self._failure_note] if self.failed is not None else []
        notes += [passes_note(self.passes)] if self.passes > 1 else []
        notes += [UNFINISHED_NOTE] if self.unfinished and self.failed is None else []
        notes += [earlier_calls_note(self.earlier_calls)] if self.earlier_calls else []
        return replace(graph, notes=(*graph.notes, *notes)) if notes else graph

    def _with_grad_notes(self, graph: Graph, optimizers: Optimizers | None) -> Graph:
        """``graph`` with what its parameters' ``.grad`` tells: parameters that got a gradient but are
        in no optimizer seen stepping; ``.grad`` that already held one when the step's backward began,
        within one optimizer step (several backward calls before a step: intended, said without
        warning); and the last optimizer step that used a ``.grad`` summed across steps (no
        zero_grad(): :meth:`Optimizers.accumulated`, this step's or an earlier one's)."""
        left = optimizers.unheld(self.trained(graph)) if optimizers is not None else []
        norms, across = self._held_norms()
        held = [(name, norm) for name, norm in nonzero(norms) if name not in left]
        used = optimizers.accumulated() if optimizers is not None else None  # (decided at an optimizer step)
        notes = [accumulation_note(used[0], nonzero(_floats(used[1]))) if used is not None else None,
                 added_note(self.number, [(name, norm) for name, norm in held if name not in across]),
                 optimizers.note(self.number, left) if optimizers else None]  # fmt: skip
        added = tuple(n for n in notes if n is not None)
        return replace(graph, notes=(*graph.notes, *added)) if added else graph

    def trained(self, graph: Graph) -> list[tuple[torch.Tensor, str]]:
        """The named leaves the step's backward reached (``graph``: the step's), with their names."""
        ids = self.collected.ids
        return [(leaf, name) for i, leaf, name in self.leaves
                if name is not None and ids[i] in graph and graph.node(ids[i]).executed]  # fmt: skip

    def _held_norms(self) -> tuple[dict[str, float | None], set[str]]:
        """What ``.grad`` held as the first pass began (name -> norm), and the names of those the last
        optimizer step left there."""
        held = self.held or {}
        try:  # one sync for all
            values = torch.stack([n.float().cpu() for n, _ in held.values()]).tolist() if held else []
        except RuntimeError:
            return {}, set()
        return dict(zip(held, values, strict=True)), {name for name, (_, kept) in held.items() if kept}

    def replay(self) -> Replay:
        """What a re-run replays, and what the step ran on (:class:`Replay`)."""
        assert self.call is not None
        grads = [self.store.get((i, f"grad-in:{nr}")) for i, nr in self.outputs]
        args, kwargs, rng, origin, autocast = self.call
        kept = None if any(g is None for g in grads) else [g for g in grads if g is not None]
        return Replay(self.number, args, kwargs, rng, kept, origin, autocast, self.parameters, self.inputs,
                      dict(self.in_checkpoint), tuple(self.edited), self.training)  # fmt: skip

    def record_history(self, history: GradHistories, graph: Graph) -> Graph:
        """Each named leaf's ``.grad`` after this step's last pass, and the norm it received in it;
        ``graph`` with a note for a name whose history restarted (another tensor under it now)."""
        ids = self.collected.ids
        norms = self.grad_norms if len(self.grad_norms) == len(self.leaves) else [None] * len(self.leaves)
        names: set[str] = set()
        for (i, leaf, name), norm in zip(self.leaves, norms, strict=True):
            if name is None:
                continue
            received = graph.node(ids[i]).grad_norm if ids[i] in graph else None
            history.add(name, leaf, GradStep(step=self.number, grad_norm=norm, received_norm=received))
            names.add(name)
        notes = history.notes(names)
        return replace(graph, notes=(*graph.notes, *notes)) if notes else graph
