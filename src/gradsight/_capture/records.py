"""The data a capture passes between its phases: options in, collected columns, the result.

Plain containers (no logic beyond small helpers), kept apart from walk.py's algorithms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..graph import Graph, LeafInfo, OpaqueKind, OutputMeta, SavedValue, TensorSummary
from .store import TensorStore

_ELEMENT_BYTES = {"float64": 8, "complex128": 16, "complex64": 8, "float16": 2, "bfloat16": 2, "int64": 8}


@dataclass
class CaptureOptions:
    """What the caller knows beyond the graph itself.

    ``leaf_names`` maps leaf tensors (by identity) to names; ``variables`` maps grad_fn nodes to
    the user's variable names; ``presaved`` holds saved values summarized earlier (before a
    backward freed them), ``observed`` the gradients that backward computed (``produced``: those each
    node passed down, where they were kept); ``modules`` maps
    grad_fn nodes to their exact module path.
    """

    leaf_names: Mapping[torch.Tensor, str] = field(default_factory=dict)
    variables: Mapping[Any, str] = field(default_factory=dict)
    presaved: Mapping[Any, Presaved] = field(default_factory=dict)
    observed: Mapping[Any, Observed] = field(default_factory=dict)  # gradients seen flowing, by node
    produced: Mapping[Any, Observed] = field(default_factory=dict)  # gradients each node produced (grad_out)
    module_of: Callable[[int], str | None] | None = None  # sequence nr -> innermost module path
    source_of: Callable[[int], str | None] | None = None  # sequence nr -> "file.py:12  code"
    stats: bool = True  # without a store: compute statistics now
    store: TensorStore | None = None  # keep tensors (within its budget) for lazy statistics


@dataclass
class Collected:
    """Phase 1's output: per node (by walk index) plain data, no torch objects."""

    names: list[str]
    seqs: list[int]
    opaque: list[OpaqueKind | None]
    edges: list[list[tuple[int | None, int]]]
    outputs: list[tuple[OutputMeta, ...]]
    saved: list[dict[str, SavedValue]]
    leaves: list[LeafInfo | None]
    variables: list[str | None]
    modules: list[str | None] | None
    sources: list[str | None]
    roots: list[int]
    ids: list[str] = field(default_factory=list)  # set by assign_ids()
    topo: list[int] = field(default_factory=list)
    top: list[int] = field(default_factory=list)  # the roots no other node feeds (walk.graph_roots)
    final_modules: list[str | None] = field(default_factory=list)

    def gradient_bytes(self) -> int:
        """What keeping every gradient would cost: one per node output (from output metadata). A
        nested tensor's ragged dim (-1: its tensors differ in size there) counts as 1, a lower bound
        (the store's budget still caps what is kept)."""
        total = 0
        for outs in self.outputs:
            for o in outs:
                n = 1
                for d in o.shape:
                    n *= d if d >= 0 else 1
                total += n * _ELEMENT_BYTES.get(o.dtype, 4)
        return total


@dataclass
class Captured:
    """A graph plus what lazy inspection needs: the kept tensors and node id -> walk index."""

    graph: Graph
    store: TensorStore | None = None
    index_of: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, graph: Graph, c: Collected, store: TensorStore | None) -> Captured:
        return cls(graph, store, {node_id: i for i, node_id in enumerate(c.ids)})

    def has_tensors(self, node_id: str) -> bool:
        """Are the tensors of ``node_id`` (saved values, gradients into it) kept, or is there none?"""
        node = self.graph.node(node_id)
        i = self.index_of.get(node_id)
        store = self.store
        if store is None or i is None:
            return False
        wanted = [f"grad-in:{k}" for k, g in enumerate(node.grad_in) if g is not None and node.executed]
        wanted += [f"saved:{name}" for name, v in node.saved.items() if isinstance(v, TensorSummary) and not v.freed]
        return all(store.get((i, key)) is not None for key in wanted)


@dataclass
class Gradients:
    """What backward recorded, by walk index (see hooks.GradRecorder and finish.py)."""

    grad_in: Mapping[int, tuple[TensorSummary | None, ...]]
    grad_out: Mapping[int, tuple[TensorSummary | None, ...]]
    executed: set[int]
    norms: Mapping[int, float | None]


@dataclass
class Presaved:
    """Saved values read before a backward freed them, and the tensors themselves (if kept)."""

    values: dict[str, SavedValue]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)  # of the tensors when read (in-place changes since)
    leaf_version: int | None = None  # an AccumulateGrad's: its leaf's version counter when read


@dataclass
class Observed:
    """The gradients that flowed into one node in a backward gradsight watched (a %%gradsight cell's),
    or that it produced: what its hooks recorded (see hooks.grad_meta), and the tensors themselves if kept."""

    metas: tuple[Any, ...]
    tensors: tuple[torch.Tensor | None, ...] | None = None
    versions: tuple[int | None, ...] | None = None  # the tensors' version counters just after the call
