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
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree

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


def made_from_python(func: Any, given: list[Any]) -> bool:
    """Whether a call that involves no followed value makes a tensor of plain Python numbers or arrays
    (``torch.tensor(x.item() * 2)``)."""
    if getattr(func, "__name__", "") not in _FACTORIES:
        return False
    return any(isinstance(v, (float, complex)) or _array_pointer(v) is not None for v in given)


def from_array(given: list[Any]) -> bool:
    """Whether a call that involves no followed value is given a tensor whose memory torch did not
    allocate (its storage cannot resize): ``torch.from_numpy(a * 2)``, ``torch.frombuffer``. Neither goes
    through ``__torch_function__``, and an array NumPy computed anew has a buffer no conversion made,
    so such a tensor is followed as possibly made of the conversion, as ``torch.tensor(x.item() * 2)`` is."""
    for value in given:
        if isinstance(value, torch.Tensor) and not value.requires_grad and value.device.type == "cpu":
            try:
                if not value.untyped_storage().resizable():
                    return True
            except (RuntimeError, NotImplementedError):  # sparse, or no storage at all
                continue
    return False


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
