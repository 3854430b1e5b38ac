"""A live step's capture: the forward being captured (:class:`Forward`: the model's names as they are
now, its module ranges and source lines, and what a re-run replays), and the step it makes once it
ends (:meth:`Forward.step`: the graph below the model's outputs walked and hooked). live.py decides
which forwards are captured and owns the step from there on.

Names and modules are read at each captured step's start, not once: a submodule replaced or added
since the debugger attached (a new head, LoRA adapters) is named and attributed, and one replaced is
not kept alive. Each step records what a re-run replays: its inputs, RNG and autocast state, and
what it ran on (the parameters' versions), so a re-run after the optimizer step can say so, and its
modules' ``training`` flags, so a re-run after a validation pass's ``model.eval()`` runs as the step did.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch

from ..config import options
from .facts import Versions, autocast_state, renormalized, versions
from .followed import model_names
from .guard import rng_state
from .live_notes import node_key
from .live_optimizers import Optimizers
from .live_step import LiveStep
from .modules import ModuleTracker
from .outputs import flatten_tensors
from .records import CaptureOptions
from .source import SourceTracker, user_line
from .store import TensorStore
from .train_flags import Flags, flags_of
from .walk import ACCUMULATE_GRAD, collect, gc_paused


@dataclass
class Forward:
    """A forward of the model being captured: its thread, when it began, its module ranges, the
    model's leaf names then, its call (args, kwargs, RNG state, the user's line, autocast state: see
    ``LiveStep.call``), its inputs' versions as it began, and its source tracker (source lines on)."""

    thread: int
    started: float
    tracker: ModuleTracker
    leaf_names: dict[torch.Tensor, str]
    call: tuple[Any, Any, Any, Any, Any]
    inputs_before: Versions
    training: Flags = ()  # the modules' training flags as it began: a re-run replays them
    sources: SourceTracker | None = None

    @classmethod
    def of(cls, model: torch.nn.Module, here: int, now: float, args: Any, kwargs: Any, frame: FrameType) -> Forward:
        """Thread ``here``'s call of ``model`` with ``args``/``kwargs``, begun at ``now`` from ``frame``."""
        modules, leaf_names = model_names(model)
        tracker = ModuleTracker(modules, start=False)
        # a re-run's ops keep the user's line; it runs under the autocast regions this call runs under
        call = (args, kwargs, rng_state(), user_line(frame), autocast_state())
        before = versions(flatten_tensors((args, kwargs)))  # an input the forward edits in place moves
        return cls(here, now, tracker, leaf_names, call, before, flags_of(modules))

    def start(self, source_lines: bool) -> None:
        self.tracker.start()
        if source_lines:
            self.sources = SourceTracker()
            self.sources.__enter__()

    def step(self, count: Callable[..., int], outputs: list[torch.Tensor], *, model: torch.nn.Module | None,
             budget: int, pass_ended: Callable[[LiveStep, bool], None], ended: float,
             optimizers: Optimizers | None = None) -> LiveStep:  # fmt: skip
        """The step (numbered by ``count`` once a backward reaches it: :class:`LiveStep`) from the
        ``outputs`` (with a ``grad_fn``) of this forward, ended at ``ended``: its graph collected and
        hooked (every node's gradients kept unless the graph is big), and what it ran on — the
        parameters' versions (for a re-run to tell an optimizer step), its call's inputs, and those its
        forward edited in place; ``optimizers``: those seen stepping (what ``.grad`` held at their last
        step)."""
        roots = [t.grad_fn for t in outputs]
        leaf_names, sources = self.leaf_names, self.sources
        store = TensorStore(budget, eager=False)  # live steps: statistics only on click
        opts = CaptureOptions(leaf_names=leaf_names, store=store, module_of=self.tracker.module_of,
                              source_of=None if sources is None else sources.source_of)  # fmt: skip
        with gc_paused(promote=False):  # every captured step: see gc_paused and LiveStep.publish
            return self._hooked(count, roots, outputs, opts, store, model, pass_ended, ended, optimizers)

    def _hooked(self, count: Callable[..., int], roots: list[Any], outputs: list[torch.Tensor],
                opts: CaptureOptions, store: TensorStore, model: torch.nn.Module | None,
                pass_ended: Callable[[LiveStep, bool], None], ended: float,
                optimizers: Optimizers | None) -> LiveStep:  # fmt: skip
        collected, order = collect(list(dict.fromkeys(roots)), opts)
        keep: Collection[int] = range(len(collected.names))
        if store.kept_bytes + collected.gradient_bytes() > options.keep_all_below:
            keep = ()  # big graph: shapes and norms only (see config.Options.keep_all_below)
            store.keep_only(set())
        root_index = dict(zip(dict.fromkeys(roots), collected.roots, strict=True))
        step = LiveStep(count, collected, store, pass_ended, {*keep, *collected.roots})
        step.thread = threading.get_ident()
        step.started = self.started
        step.forward_time = ended - self.started
        step.call = self.call
        step.training = self.training
        step.outputs = [(root_index[t.grad_fn], t.output_nr) for t in outputs]
        step.roots = frozenset(node_key(r) for r in root_index)
        step.optimizers = optimizers
        try:  # a KeyboardInterrupt from here on: the hooks come off before it reaches the user
            step.recorder.install(order, collected.names)
            self._describe(step, order, model)
        except BaseException:
            step.abandon()
            raise
        return step

    def _describe(self, step: LiveStep, order: list[Any], model: torch.nn.Module | None) -> None:
        """The step's leaves, and what it ran on (see :meth:`step`)."""
        collected, leaf_names = step.collected, self.leaf_names
        step.leaves = [(i, order[i].variable, leaf_names.get(order[i].variable))
                       for i, name in enumerate(collected.names) if name == ACCUMULATE_GRAD]  # fmt: skip
        step.watch_hidden(leaf_names)
        # What the step ran on, for a re-run to tell whether it still runs on the same (an optimizer step)
        renormed = renormalized(model.modules()) if model is not None else set()
        step.parameters = versions([p for p in leaf_names if id(p) not in renormed])
        inputs = flatten_tensors(self.call[:2])
        step.inputs = versions(inputs)
        before = dict(self.inputs_before)  # the inputs its forward edited in place (x /= 2): a re-run puts them back
        step.edited = [t for t, (i, v) in zip(inputs, step.inputs, strict=False) if before.get(i, v) != v]
