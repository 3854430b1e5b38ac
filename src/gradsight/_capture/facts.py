"""What a run ran on and under, for a re-run to tell what changed since (an optimizer step between
the run shown and the re-run): the version counters of its parameters and inputs (:class:`RunFacts`,
:func:`versions`), and the autocast regions it ran under (:func:`autocast_state`), which its re-runs
replay (:func:`replaying_autocast`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import torch

from .guard import version_of

Versions = tuple[tuple[int, int], ...]  # (id, version counter) of tensors: an in-place write bumps it


def versions(tensors: Sequence[torch.Tensor]) -> Versions:
    """Each tensor's identity and version counter: an optimizer step, ``copy_`` into a batch buffer
    and any in-place write bump it, so equal versions mean a run now reads the same values. Not the
    tensors without one (an inference tensor: reading it raises; only inference mode writes it)."""
    return tuple((id(t), v) for t in tensors if (v := version_of(t)) is not None)


def renormalized(modules: Iterable[torch.nn.Module]) -> set[int]:
    """Ids of the weights ``nn.Embedding(max_norm=...)`` renormalizes in place in every forward,
    gradsight's too (and puts back): their versions move without anyone training them."""
    return {id(m.weight) for m in modules
            if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.max_norm is not None}  # fmt: skip


def tracked_parameters(modules: Sequence[tuple[str, torch.nn.Module]]) -> Iterator[torch.Tensor]:
    """The parameters of ``modules`` whose versions a run's facts hold: not the :func:`renormalized` ones."""
    renormed = renormalized(m for _, m in modules)
    for _, m in modules:
        for p in m.parameters(recurse=False):
            if id(p) not in renormed:  # also where the weight is tied to another module (a tied head)
                yield p


@dataclass(frozen=True)
class RunFacts:
    """What a run ran on, taken right after it (a live step's: at its forward's end): the step it
    replays (live), the parameters' and the inputs' versions; and the parameters that got their
    gradient inside a reentrant checkpoint region (name → norm): no leaves of the graph, yet not
    missing (``explain.finish``, ``explain.explain``)."""

    step: int | None = None
    parameters: Versions = ()
    inputs: Versions = ()
    in_checkpoint: Mapping[str, float] = field(default_factory=dict)


# What a run now would run on that differs from a run's facts (Target.changed)
STEP, PARAMETERS, INPUTS = "step", "parameters", "inputs"


def changed_since(since: RunFacts, parameters: Versions, inputs: Versions) -> tuple[str, ...]:
    """What differs between ``since`` and the versions a run now would run on (:data:`PARAMETERS`, :data:`INPUTS`)."""
    pairs = ((PARAMETERS, since.parameters, parameters), (INPUTS, since.inputs, inputs))
    return tuple(kind for kind, then, now in pairs if then != now)


# Device types torch.autocast knows; a step's forward records which of them it ran under.
AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu", "xla", "mtia", "ipu")
Autocast = tuple[tuple[str, torch.dtype], ...]  # (device type, dtype) of each autocast region enabled


def autocast_state() -> tuple[Autocast, bool]:
    """The autocast regions enabled here (``with torch.autocast(...)`` around the model's call) and
    whether autocast caches casts, for a re-run to replay (:func:`replaying_autocast`)."""
    enabled: list[tuple[str, torch.dtype]] = []
    for device in AUTOCAST_DEVICES:
        try:
            if torch.is_autocast_enabled(device):
                enabled.append((device, torch.get_autocast_dtype(device)))
        except (RuntimeError, ValueError):  # a device type this build does not know
            continue
    return tuple(enabled), torch.is_autocast_cache_enabled()


@contextmanager
def replaying_autocast(state: tuple[Autocast, bool]) -> Iterator[None]:
    """Exactly the autocast regions of ``state``: those it had enabled (bfloat16 matmuls, with their
    ``ToCopyBackward0`` casts in the graph), and none of those enabled where the re-run is called."""
    enabled, cache = state
    with ExitStack() as stack:
        for device, dtype in enabled:
            stack.enter_context(torch.autocast(device, dtype=dtype, cache_enabled=cache))
        on = {device for device, _ in enabled}
        for device, _ in autocast_state()[0]:
            if device not in on:
                stack.enter_context(torch.autocast(device, enabled=False))
        yield
