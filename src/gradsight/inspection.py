"""What the inspector shows for one node, computed on demand: torch-free data.

``dbg.inspect(node_id)`` returns an :class:`Inspection`; the view asks for the same thing with an
``inspect`` request when the user clicks a node. Each tensor the node touches (saved values,
gradients in and out, the leaf and its ``.grad``) becomes a :class:`TensorView` with full
statistics, a histogram and a small preview of its values, all reduced on the Python side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .graph import TensorSummary, Why

Section = Literal["saved", "grad-in", "grad-out", "leaf"]


@dataclass(frozen=True)
class Histogram:
    """Counts of the finite values in equal-width bins over [min, max]; NaN/±Inf counted apart.

    Past a million values, about 1 in ``stride`` values is binned (the counts are of that sample,
    spread so that it cannot alias with a tensor's rows or columns); an expanded tensor's distinct
    values are binned, each standing for ``stride`` of its values."""

    min: float | None
    max: float | None
    counts: tuple[int, ...]
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    stride: int = 1


@dataclass(frozen=True)
class Preview:
    """Values of a 1-D or 2-D slice, block-averaged down to at most ~128×128 (or 2048) cells.

    ``index`` fixes the leading dims of an N-D tensor (the slice shown); ``block`` says how many
    values each cell averages per dim (1 = exact values). ``values`` is row-major float32, or
    float64 (``dtype``) when float32 would turn a finite value into ±Inf or a nonzero one into 0, or
    round an integer tensor's values (past 2**24)."""

    shape: tuple[int, ...]
    full_shape: tuple[int, ...]
    index: tuple[int, ...]
    block: tuple[int, ...]
    values: bytes  # little-endian, prod(shape) values of dtype
    dtype: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class TensorView:
    """One tensor of the inspected node."""

    key: str  # "saved:_saved_self", "grad-in:0", "grad-out:1", "leaf:value", "leaf:grad"
    section: Section
    name: str
    summary: TensorSummary
    kept: bool  # gradsight still holds the tensor (histogram and preview available)
    histogram: Histogram | None = None
    preview: Preview | None = None
    note: str | None = None


@dataclass(frozen=True)
class GradStep:
    """A leaf's ``.grad`` after one backward (live mode): how it accumulates across steps."""

    step: int
    grad_norm: float | None
    received_norm: float | None


@dataclass(frozen=True)
class Inspection:
    node: str
    tensors: tuple[TensorView, ...]
    history: tuple[GradStep, ...] = ()
    why: Why | None = None  # for a leaf whose gradient is None or zero
