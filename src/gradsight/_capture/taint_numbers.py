"""Values that leave torch during a taint trace (taint.py): ``.item()``, ``float()``, ``int()``,
``.tolist()`` and ``.numpy()`` turn a followed tensor into Python numbers or a NumPy array, and
``torch.tensor(x.item())`` or ``torch.from_numpy(a)`` makes a new tensor of them with no graph
behind it. The numbers are followed by identity (the same float object reaches ``torch.tensor``),
arrays also by their buffer (``torch.from_numpy`` does not go through ``__torch_function__``; the
tensor it makes shares the array's memory). Arithmetic in plain Python (``x.item() * 2``) makes new
objects and is not followed: a tensor made of Python numbers after a conversion (``torch.tensor``,
``torch.as_tensor``: :func:`made_from_python`; ``torch.from_numpy`` of an array NumPy computed:
:func:`from_array`) is followed as possibly made of it, and ``taint.trace`` names the conversion (with
the cut its values carried already: ``.detach().numpy()``) as the likely cut where that tensor reaches
the loss; a number only printed or logged is no cut (nor one given to another torch call:
``out * (x.item() * 2)`` is not followed, as a float argument such as a dropout rate cannot be told
from it). A ``.tolist()`` of more than
``FOLLOWED_AT_MOST`` values is not followed value by value (``why()`` stays fast on a cell that
collects its predictions): only as possibly made of it.

Memory that cannot be made of the converted values is never taken for it (:class:`Existing`): a batch
a DataLoader worker made (shared memory, another process), and arrays or tensors the user's code
already held when the values left torch (a dataset ``X`` whose row ``torch.from_numpy(X[i])`` becomes
the next batch). NumPy arithmetic itself cannot be followed, so what remains is still a guess, and
``taint.trace`` prefers a certain cut on the same path to it.
"""

from __future__ import annotations

import bisect
import itertools
from types import FrameType, FunctionType, MethodType, ModuleType
from typing import Any

import torch
from torch.utils import _pytree

from .source import INTERNAL_ROOTS

# The tensor methods that hand a tensor's values to Python (``float(t)`` is ``t.__float__()``).
CONVERSIONS = frozenset({"item", "tolist", "numpy", "__float__", "__int__", "__index__", "__complex__", "__array__"})

# How the user wrote each conversion.
SPELLING = {"item": ".item()", "tolist": ".tolist()", "numpy": ".numpy()", "__float__": "float()", "__int__": "int()",
            "__index__": "int()", "__complex__": "complex()", "__array__": "numpy.asarray()"}  # fmt: skip

# The conversions whose values NumPy takes on (``np.asarray(t.tolist())``): a tensor made from an array later
# may be made of them (:func:`from_array`).
TO_ARRAYS = frozenset({"numpy", "__array__", "tolist"})

# CPython caches these ints: ``int(t) == 3`` is the same object as every literal 3 (a ``dim=``, a
# shape), so following it would taint unrelated calls.
_SHARED_INTS = range(-5, 257)

FOLLOWED_AT_MOST = 4096  # the values of one conversion followed one by one

# How far :class:`Existing` looks from the user's frames (a loader -> its dataset -> its array), and at most
# how many objects and items of one container it looks at (why() stays fast on a namespace of big lists).
_DEPTH, _LOOKED_AT_MOST, _ITEMS_AT_MOST = 2, 20000, 1000

# Calls that make a tensor of the Python numbers (or arrays) they are given.
_FACTORIES = frozenset({"tensor", "as_tensor", "asarray", "scalar_tensor"})


def converts(func: Any) -> bool:
    """Whether ``func`` hands a tensor's values to Python (a number, a list of them, an array)."""
    return getattr(func, "__name__", "") in CONVERSIONS


class Numbers:
    """The numbers and arrays made from followed tensors, each with the breaks it carries (indices
    into the trace's breaks), kept alive for the trace so their ids stay theirs."""

    def __init__(self) -> None:
        self.kept: dict[int, tuple[object, frozenset[int]]] = {}
        self.buffers: dict[int, frozenset[int]] = {}  # an array's data pointer -> its breaks
        self.converted = False  # a followed tensor was handed to Python (followed or not)

    def __bool__(self) -> bool:
        return bool(self.kept)

    def keep(self, out: Any, carried: frozenset[int], size: int = 0) -> None:
        """Follow the numbers (or array) ``out`` made of ``size`` values of followed tensors."""
        self.converted = True
        if size > FOLLOWED_AT_MOST and isinstance(out, list):
            return  # too many to follow one by one: only as possibly made of it (made_from_python)
        for value in _pytree.tree_flatten(out)[0]:
            if not _followable(value):
                continue
            self.kept[id(value)] = (value, carried)
            pointer = _array_pointer(value)
            if pointer:
                self.buffers[pointer] = carried

    def fed(self, given: list[Any], tainted: dict[int, torch.Tensor]) -> list[frozenset[int]]:
        """The breaks carried by the kept numbers among a call's arguments (``given``, flattened), and
        by tensors that are views of a kept array (``torch.from_numpy(a)``) and not followed already."""
        found = []
        for value in given:
            entry = self.kept.get(id(value))
            if entry is not None and entry[0] is value:
                found.append(entry[1])
            elif self.buffers and isinstance(value, torch.Tensor) and tainted.get(id(value)) is not value:
                carried = self.buffers.get(_data_pointer(value))
                if carried is not None:
                    found.append(carried)
        return found


class Existing:
    """The memory of the arrays and tensors the user's code held when a followed value left torch (seen
    from its frames: their variables, the module's globals, and what those hold two steps down, such as a
    DataLoader's dataset's array), kept alive for the trace so that no array computed later reuses it.
    NumPy arithmetic on the converted values makes new arrays, so memory inside these is not made of them."""

    def __init__(self, frame: FrameType | None = None, outer: FrameType | None = None) -> None:
        self.held: list[Any] = []
        spans: set[tuple[int, int]] = set()
        seen: set[int] = set()
        level = [v for f in _user_frames(frame, outer) for v in (*f.f_locals.values(), *f.f_globals.values())]
        for _ in range(_DEPTH + 1):
            below: list[Any] = []
            for value in level:
                if id(value) in seen or len(seen) >= _LOOKED_AT_MOST:
                    continue
                seen.add(id(value))
                span = _span(value)
                if span is not None:
                    spans.add(span)
                    self.held.append(value)
                else:
                    below += _inside(value)
            level = below
        self._starts, self._ends = _merged(sorted(spans))

    def holds(self, pointer: int) -> bool:
        """Whether ``pointer`` lies in the memory of an array or tensor held before."""
        i = bisect.bisect_right(self._starts, pointer) - 1
        return i >= 0 and pointer < self._ends[i]


def _merged(spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Sorted spans as disjoint (starts, ends): views and the arrays they view overlap."""
    starts: list[int] = []
    ends: list[int] = []
    for start, end in spans:
        if ends and start <= ends[-1]:
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    return starts, ends


def made_from_python(func: Any, given: list[Any], existing: Existing) -> bool:
    """Whether a call that involves no followed value makes a tensor of plain Python numbers or arrays
    (``torch.tensor(x.item() * 2)``), an array not in memory the user's code held before (``existing``)."""
    if getattr(func, "__name__", "") not in _FACTORIES:
        return False
    return any(isinstance(v, (float, complex)) or _new_array(v, existing) for v in given)


def from_array(given: list[Any], existing: Existing) -> bool:
    """Whether a call that involves no followed value is given a tensor whose memory torch did not
    allocate (its storage cannot resize): ``torch.from_numpy(a * 2)``, ``torch.frombuffer``. Neither goes
    through ``__torch_function__``, and an array NumPy computed anew has a buffer no conversion made,
    so such a tensor is followed as possibly made of the conversion, as ``torch.tensor(x.item() * 2)`` is;
    not one on shared memory (a DataLoader worker's batch, made in another process), nor one in memory
    the user's code held before the conversion (``existing``: ``torch.from_numpy(X[i])`` of a dataset)."""
    for value in given:
        if isinstance(value, torch.Tensor) and not value.requires_grad and value.device.type == "cpu":
            try:
                storage = value.untyped_storage()
                if storage.resizable() or storage.is_shared():
                    continue
            except (RuntimeError, NotImplementedError):  # sparse, or no storage at all
                continue
            if not existing.holds(_data_pointer(value)):
                return True
    return False


def _new_array(value: Any, existing: Existing) -> bool:
    pointer = _array_pointer(value)
    return pointer is not None and not existing.holds(pointer)


def _user_frames(frame: FrameType | None, outer: FrameType | None) -> list[FrameType]:
    """The frames of the user's code from ``frame`` up to ``outer`` (not torch's nor gradsight's)."""
    frames = []
    while frame is not None and frame is not outer:
        if not frame.f_code.co_filename.startswith(INTERNAL_ROOTS):
            frames.append(frame)
        frame = frame.f_back
    return frames


def _span(value: Any) -> tuple[int, int] | None:
    """The memory (start, end) of a NumPy array (all of the array it is a view of) or a CPU tensor's storage."""
    if isinstance(value, torch.Tensor):
        if value.device.type != "cpu" or value.is_sparse:
            return None
        try:
            storage = value.untyped_storage()
            begins = int(storage.data_ptr())
        except (RuntimeError, NotImplementedError):
            return None
        return (begins, begins + int(storage.nbytes())) if begins else None
    if _array_pointer(value) is None:
        return None
    while _array_pointer(value.base) is not None:
        value = value.base
    start = _array_pointer(value)
    return (start, start + int(getattr(value, "nbytes", 0))) if start is not None else None


def _inside(value: Any) -> list[Any]:
    """What a container or a plain object holds, one step down (not modules, classes, functions)."""
    if isinstance(value, dict):
        return list(itertools.islice(value.values(), _ITEMS_AT_MOST))
    if isinstance(value, (list, tuple)):
        return list(value[:_ITEMS_AT_MOST])
    if isinstance(value, (type, ModuleType, FunctionType, MethodType, str, bytes, int, float)):
        return []
    try:
        attributes = object.__getattribute__(value, "__dict__")
    except (AttributeError, TypeError):
        return []
    return list(itertools.islice(attributes.values(), _ITEMS_AT_MOST)) if isinstance(attributes, dict) else []


def _followable(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value not in _SHARED_INTS
    return isinstance(value, (float, complex)) or _array_pointer(value) is not None


def _array_pointer(value: Any) -> int | None:
    """A NumPy array's data pointer (without importing NumPy), or None for anything else."""
    if type(value).__name__ != "ndarray" or not type(value).__module__.startswith("numpy"):
        return None
    data = getattr(value, "__array_interface__", {}).get("data")
    return int(data[0]) if data and data[0] else None


def _data_pointer(t: torch.Tensor) -> int:
    try:
        return int(t.data_ptr())
    except RuntimeError:  # sparse, meta, or no storage at all
        return 0
