"""The torch-free graph model: what gradsight captured, as plain frozen data.

Nothing here imports torch, so tests, the wire schema and the view contract can build graphs
by hand::

    >>> from gradsight.graph import Graph, Node
    >>> g = Graph(nodes=(Node(id="SumBackward0#0", name="SumBackward0", kind="root"),),
    ...           roots=("SumBackward0#0",))
    >>> [n.name for n in g.find("Sum")]
    ['SumBackward0']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, NoReturn, TypeAlias

NodeKind = Literal["op", "leaf", "root", "opaque"]
OpaqueKind = Literal["compiled", "checkpoint", "custom", "backward-hook"]
RunMode = Literal["tensor", "cell", "runnable", "live"]
RootGradient = Literal["scalar", "ones", "grad_output"]
WhyReason = Literal[
    "requires_grad_false", "detach", "no_grad", "inference_mode", "non_differentiable", "data", "not_on_path",
    "unused", "freed", "zero", "nonfinite", "exploding", "vanishing", "backward_error", "unknown",
]  # fmt: skip


@dataclass(frozen=True)
class TensorSummary:
    """Shape, type and statistics of one tensor, taken while the tensor was alive.

    Statistics are ``None`` when they do not exist (an empty tensor, a meta tensor) or are not
    finite; ``nan_count`` / ``inf_count`` say how many values were NaN / infinite. For complex
    tensors the statistics describe the magnitude ``|z|`` (see ``note``).

    They are also ``None`` until computed: a small capture (up to 262,144 elements in 128 tensors)
    takes them at once; in bigger ones a saved tensor gets them when its node is inspected
    (``dbg.inspect(node_id)``, or a click), and a gradient carries its ``norm`` (and NaN/Inf counts
    when it is not finite) until then.
    """

    shape: tuple[int, ...]
    dtype: str
    device: str
    numel: int
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    norm: float | None = None
    nan_count: int | None = None
    inf_count: int | None = None
    layout: str = "strided"
    freed: bool = False  # autograd freed the tensor (backward ran) after gradsight summarized it
    note: str | None = None

    @property
    def nonfinite(self) -> bool:
        """NaN or Inf in the tensor: counted, or (when only the norm was taken) a norm that is not finite."""
        return bool(self.nan_count or self.inf_count or (self.norm is not None and not math.isfinite(self.norm)))

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's elements (what it costs to keep it saved for backward)."""
        return self.numel * _DTYPE_BYTES.get(self.dtype, 4)

    @classmethod
    def meta(cls, shape: tuple[int, ...], dtype: str, device: str, numel: int, layout: str) -> TensorSummary:
        """A summary without statistics, built ~3× faster than through ``__init__`` (a capture
        makes one per saved tensor; frozen dataclasses set each field through object.__setattr__)."""
        obj = object.__new__(cls)
        obj.__dict__.update(_META_DEFAULTS, shape=shape, dtype=dtype, device=device, numel=numel, layout=layout)
        return obj

    def with_norm(self, norm: float) -> TensorSummary:
        """A copy with ``norm`` set (as fast as :meth:`meta`; ``dataclasses.replace`` took ~9 µs)."""
        obj = object.__new__(type(self))
        obj.__dict__.update(self.__dict__, norm=norm)
        return obj


@dataclass(frozen=True)
class Unavailable:
    """A saved value gradsight could not read, with the reason (e.g. freed before capture)."""

    reason: str


SavedValue: TypeAlias = "TensorSummary | Unavailable | int | float | bool | str | tuple[SavedValue, ...] | None"


class SavedValues(dict[str, "SavedValue"]):
    """``node.saved``: what autograd saved for the node — a ``dict`` (``json.dumps``,
    ``dataclasses.asdict``, ``saved | {...}`` and ``isinstance(saved, dict)`` work as on any dict), but
    read-only like the rest of the graph: every write raises ``TypeError``. Hashes (by its items),
    pickles and copies; ``saved | other`` and ``saved.copy()`` are plain dicts to change.

    >>> saved = SavedValues({"_saved_dim": 1})
    >>> saved == {"_saved_dim": 1}, saved["_saved_dim"], saved | {"_saved_keepdim": False}
    (True, 1, {'_saved_dim': 1, '_saved_keepdim': False})
    """

    __slots__ = ()

    def __init__(self, items: Mapping[str, SavedValue] | Iterable[tuple[str, SavedValue]] | None = None) -> None:
        if len(self):
            self._refuse()  # dict.__init__ again would add to it
        super().__init__(items or {})

    @classmethod
    def owning(cls, items: dict[str, SavedValue]) -> SavedValues:
        """``items`` as saved values (none: the one shared empty instance)."""
        return cls(items) if items else _NO_SAVED

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "node.saved is read-only (the graph is a snapshot): copy it first, e.g. dict(node.saved) or "
            "node.saved | {...}"
        )

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __repr__(self) -> str:
        return dict.__repr__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SavedValues, (dict(self),))

    def __copy__(self) -> SavedValues:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SavedValues:
        import copy

        return SavedValues(copy.deepcopy(dict(self), memo))


_NO_SAVED = SavedValues()


@dataclass(frozen=True)
class OutputMeta:
    """Shape/dtype/device of one forward output of the op (one gradient input of the node)."""

    shape: tuple[int, ...]
    dtype: str
    device: str


@dataclass(frozen=True)
class LeafInfo:
    """The leaf tensor behind an ``AccumulateGrad`` node (fields in DESIGN §2's order first)."""

    name: str | None
    shape: tuple[int, ...]
    requires_grad: bool
    grad: TensorSummary | None = None  # the leaf's ``.grad`` at capture time
    dtype: str = "float32"
    is_parameter: bool = False
    device: str = "cpu"

    @classmethod
    def fast(cls, name: str | None, shape: tuple[int, ...], dtype: str, requires_grad: bool,
             grad: TensorSummary | None, is_parameter: bool, device: str) -> LeafInfo:  # fmt: skip
        """Build from every field, ~3× faster than ``__init__`` (as :meth:`Node.fast`)."""
        obj = object.__new__(cls)
        obj.__dict__.update(name=name, shape=shape, dtype=dtype, requires_grad=requires_grad, grad=grad,
                            is_parameter=is_parameter, device=device)  # fmt: skip
        return obj


Edge: TypeAlias = "tuple[str | None, int]"


@dataclass(frozen=True)
class Node:
    """One autograd node (a ``grad_fn`` or an ``AccumulateGrad`` leaf).

    ``grad_in`` / ``grad_out`` are empty when no backward was observed (``executed`` is None) or,
    for ``grad_out``, when it was not recorded: a graph whose gradients pass
    ``options.keep_all_below`` records what a node produced only for inspected nodes
    (``dbg.inspect(node_id)`` re-runs the step to record it; a ``%%gradsight`` cell: none, it re-runs nothing).
    """

    id: str
    name: str
    kind: NodeKind
    module: str | None = None
    next: tuple[Edge, ...] = ()
    saved: dict[str, SavedValue] = field(default_factory=lambda: _NO_SAVED)  # read-only: SavedValues
    grad_in: tuple[TensorSummary | None, ...] = ()
    grad_out: tuple[TensorSummary | None, ...] = ()
    leaf: LeafInfo | None = None
    source: str | None = None
    outputs: tuple[OutputMeta, ...] = ()
    variable: str | None = None  # the user's variable holding this node's output, if known
    opaque_kind: OpaqueKind | None = None  # for kind "opaque": what hides the ops inside
    executed: bool | None = None  # did backward run this node? None: no backward was observed
    grad_norm: float | None = None  # L2 norm of all gradients flowing into the node (see nonfinite_gradient)

    @classmethod
    def fast(cls, **fields: Any) -> Node:
        """Build a node from *every* field, ~3× faster than ``__init__`` (a capture builds one per
        node; frozen dataclasses set each field through object.__setattr__)."""
        if fields.keys() != _NODE_FIELDS:
            raise TypeError(f"Node.fast needs exactly the fields {sorted(_NODE_FIELDS)}")
        saved = fields["saved"]
        if type(saved) is not SavedValues:  # the capture's own dict: wrapped, not copied
            fields["saved"] = SavedValues.owning(saved) if type(saved) is dict else SavedValues(saved)
        obj = object.__new__(cls)
        obj.__dict__.update(fields)
        return obj

    def __post_init__(self) -> None:
        if type(self.saved) is not SavedValues:  # a copy: the caller's dict stays the caller's
            object.__setattr__(self, "saved", SavedValues(self.saved))

    @property
    def nonfinite_gradient(self) -> bool:
        """NaN or Inf flowed into this node. Its ``grad_norm`` is then NaN or inf where only the
        gradients' norms were taken (a big graph), None where their statistics were (``nan_count`` /
        ``inf_count`` of ``grad_in`` say how many values); null on the wire either way (JSON has no NaN)."""
        return any(g is not None and g.nonfinite for g in self.grad_in)

    @property
    def label(self) -> str:
        """Short display text: op name, module, first output shape."""
        parts = [self.leaf.name if self.leaf and self.leaf.name else self.name]
        if self.module and not self.leaf:
            parts.append(self.module)
        if self.outputs:
            parts.append(format_shape(self.outputs[0].shape))
        return "  ".join(parts)


_NODE_FIELDS = frozenset(
    ["id", "name", "kind", "module", "next", "saved", "grad_in", "grad_out", "leaf", "source", "outputs", "variable",
     "opaque_kind", "executed", "grad_norm"]
)  # fmt: skip


@dataclass(frozen=True)
class Why:
    """Why a leaf's ``.grad`` is None (or zero, or NaN/Inf), and where the path from the root breaks."""

    name: str  # the leaf: "layer1.weight", "input", a cell variable
    reason: WhyReason
    message: str
    where: str | None = None  # node id where the path breaks or the gradient became zero
    source: str | None = None  # forward source line of the break, when known


@dataclass(frozen=True)
class LeafControl:
    """A leaf the user can toggle: its current ``requires_grad``, whether it is in this graph, and its
    dtype (``"int64"``: the view offers no requires_grad box, torch refuses one; None when unknown)."""

    name: str
    requires_grad: bool
    in_graph: bool
    dtype: str | None = None


@dataclass(frozen=True)
class Controls:
    """What a re-run can change: which leaves, modules and variables can be named in toggles."""

    rerun: bool = False
    note: str | None = None  # why this debugger cannot re-run, and what to do instead
    leaves: tuple[LeafControl, ...] = ()
    modules: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    detach_nodes: bool = False  # can ``detach`` name node ids (runnable and live debuggers)


@dataclass(frozen=True)
class RunInfo:
    """How this graph was obtained: which debugger mode, which step, what backward started from."""

    mode: RunMode = "tensor"
    step: int = 0
    root_gradient: RootGradient | None = None  # scalar root, ones as external gradient, or the user's
    loss: float | None = None
    kept_bytes: int = 0  # tensors gradsight holds for lazy inspection
    budget_bytes: int = 0
    dropped: int = 0  # tensors past the budget: summaries only
    errors: tuple[str, ...] = ()  # errors inside gradsight's own hooks (never raised into backward)
    index: int = 0  # this run's number in the debugger's history
    toggles: Mapping[str, object] | None = None  # what-if toggles applied (Toggles.to_wire()), if any


@dataclass(frozen=True)
class Graph:
    """A frozen snapshot of one backward graph.

    ``nodes`` are in a deterministic order: roots first, then the order backward runs them.
    ``message`` explains an empty graph (e.g. the tensor needs no gradient).
    """

    nodes: tuple[Node, ...] = ()
    roots: tuple[str, ...] = ()
    message: str | None = None
    notes: tuple[str, ...] = ()  # things the user should know (saved tensors freed, ...)
    run: RunInfo = field(default_factory=RunInfo)
    missing: tuple[Why, ...] = ()  # leaves that got no gradient in this run, and why
    controls: Controls = field(default_factory=Controls)
    # other paths of a shared parameter (``head.weight`` tied to ``emb.weight``) -> the leaf name the graph
    # shows it under; what find() searches besides the nodes (not on the wire: the view knows the leaf)
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)
    _index: dict[str, Node] = field(init=False, repr=False, compare=False, default_factory=dict)
    # what explaining this graph worked out once (``why_flow.starts_of``): lives and dies with the graph,
    # never pickled nor copied by replace()
    _memo: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        index = {n.id: n for n in self.nodes}
        if len(index) != len(self.nodes):
            raise ValueError("node ids must be unique")
        object.__setattr__(self, "_index", index)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_memo"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _memo={})

    @property
    def by_id(self) -> Mapping[str, Node]:
        """Every node by its id (read-only; built once, with the graph)."""
        return MappingProxyType(self._index)

    def node(self, node_id: str) -> Node:
        """The node with this id; ``KeyError`` if there is none."""
        return self._index[node_id]

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __len__(self) -> int:
        return len(self.nodes)

    def find(self, text: str) -> tuple[Node, ...]:
        """Nodes whose name, module path, leaf name or variable contains ``text``.

        >>> Graph().find("Mul")
        ()
        """
        if not isinstance(text, str):
            raise TypeError(f"find() takes the text to look for as a str, e.g. graph.find('Addmm'); got {text!r}")
        needle = text.lower()
        shown = {name for alias, name in self.aliases.items() if needle in alias.lower()}
        return tuple(n for n in self.nodes if needle in _search_text(n)
                     or (n.leaf is not None and n.leaf.name in shown))  # fmt: skip

    def with_aliases(self, aliases: Mapping[str, str]) -> Graph:
        """This graph, where :meth:`find` also finds a leaf by the other paths of its tensor (``aliases``:
        path -> the leaf name shown, for those shown here).

        >>> g = Graph(nodes=(Node(id="leaf:emb.weight", name="AccumulateGrad", kind="leaf",
        ...                       leaf=LeafInfo("emb.weight", (4, 2), True)),))
        >>> [n.id for n in g.with_aliases({"head.weight": "emb.weight"}).find("head.weight")]
        ['leaf:emb.weight']
        """
        names = {n.leaf.name for n in self.nodes if n.leaf is not None and n.leaf.name}
        kept = {alias: name for alias, name in aliases.items() if name in names and alias not in names}
        return replace(self, aliases=kept) if kept != dict(self.aliases) else self

    @property
    def leaves(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == "leaf")


def _search_text(node: Node) -> str:
    parts = [node.name, node.module or "", node.variable or ""]
    if node.leaf and node.leaf.name:
        parts.append(node.leaf.name)
    return "\n".join(parts).lower()


def format_shape(shape: tuple[int, ...]) -> str:
    """``(25,)`` → ``"(25,)"``; ``()`` → ``"()"`` (a scalar)."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


_META_DEFAULTS = {
    "min": None, "max": None, "mean": None, "std": None, "norm": None, "nan_count": None, "inf_count": None,
    "freed": False, "note": None,
}  # fmt: skip

_DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex128": 16, "complex64": 8,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}  # fmt: skip
