"""What the user changed since a ``%%gradsight`` cell's first run ended (``cell_start``): :class:`Left`.

Re-runs start from what the first run started from. But a later cell may edit one of those objects
(``images.fill_(510.)``, more ``opt.step()`` calls, ``arr[:] = new``, ``opt.param_groups[0]['lr'] = 0.01``):
the user's newer value wins — the re-run starts from it, as would a plain run of the cell's code, and
so do later re-runs (as from a generator a later cell drew from or re-seeded: ``cell_generators``). Telling a
user's edit from the first run's needs no copy: a mark of each object as the first run left it (re-read
after each re-run's give-back) —

- a tensor: its version counter (each in-place edit moves it; a re-run's go back with the values);
- a NumPy array (no counter): a checksum of its bytes, with its shape and dtype;
- an optimizer, LR scheduler or GradScaler: its ``state_dict()`` with each tensor reduced to its shape,
  dtype and (one element: Adam's ``step``) value. Its big tensors are not read: a step moves the counters
  of the parameters, which ``cell_start`` takes with their optimizer.

>>> t, left = torch.zeros(2), Left()
>>> left.record(t)
>>> left.moved(t), t.add_(1) is t, left.moved(t)
(False, True, True)
"""

from __future__ import annotations

import sys
import weakref
import zlib
from typing import Any

import torch

from .guard import unseen, version_of
from .namespace_guard import has_state

CHANGED = (
    "{names} changed since the cell's first run (a later cell edited {them}): this re-run starts from {its} "
    "current value{s} (as later re-runs will), not from the value{s} the first run started from."
)


GENERATORS_CHANGED = (
    "{names} drew numbers or {was} re-seeded since the cell's first run (a later cell used {them}): this re-run "
    "draws from {its} current state{s} (as later re-runs will), not from the state{s} the first run started from."
)


def changed_note(names: list[str], template: str = CHANGED) -> str | None:
    """The note of a re-run that found ``names`` changed since the first run (None: none); ``template``:
    :data:`GENERATORS_CHANGED` for generators (``cell_generators.FirstGenerators``)."""
    if not names:
        return None
    one = len(names) == 1
    its, them, s, was = ("its", "it", "", "was") if one else ("their", "them", "s", "were")
    return template.format(names=", ".join(sorted(names)), them=them, its=its, s=s, was=was)


class Left:
    """Marks of objects (tensors, NumPy arrays, optimizers) as a run left them; :meth:`moved` since?"""

    def __init__(self) -> None:
        self._marks: dict[int, tuple[weakref.ref[Any], Any]] = {}
        self._untold: dict[int, weakref.ref[Any]] = {}  # forgotten once moved: no graph shown has said so yet

    def record(self, obj: Any) -> None:
        """``obj``'s mark now (one without a mark, or one that cannot take a weak reference: not kept)."""
        mark = mark_of(obj)
        try:
            if mark is not None:
                self._marks[id(obj)] = (weakref.ref(obj), mark)
        except TypeError:  # no weak reference: never said to have moved
            return

    def moved(self, obj: Any) -> bool:
        """Has ``obj`` changed since it was recorded? (Not recorded: no.) One :meth:`forget` took once it
        had stays moved until :meth:`told`: a why() trace's re-run starts from it too, and its graph,
        which names it, is never shown."""
        untold = self._untold.get(id(obj))
        if untold is not None and untold() is obj:
            return True
        kept = self._marks.get(id(obj))
        if kept is None or kept[0]() is not obj:
            return False
        mark = mark_of(obj)
        return mark is not None and mark != kept[1]

    def forget(self, obj: Any) -> None:
        """No mark of ``obj`` from now on: re-runs start from it as it is (and name it until :meth:`told`
        if it moved)."""
        kept = self._marks.get(id(obj))
        if kept is not None and kept[0]() is obj:
            if self.moved(obj):
                self._untold[id(obj)] = kept[0]
            del self._marks[id(obj)]

    def told(self) -> None:
        """A re-run's graph that named what moved was shown: those are named no more."""
        self._untold.clear()


@unseen
def mark_of(obj: Any) -> Any:
    """What :class:`Left` compares (see the module's docstring); None for what has none. Never raises."""
    try:
        if isinstance(obj, torch.Tensor):
            return version_of(obj)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray):
            data = memoryview(np.ascontiguousarray(obj)).cast("B")
            return obj.shape, obj.dtype.str, zlib.crc32(data)
        return _state_mark(obj.state_dict()) if has_state(obj) else None
    except Exception:  # an object array (no buffer), a state that cannot be read: no mark
        return None


_EMPTY = ("dict", ())


def _state_mark(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        item = repr(value.item()) if value.numel() == 1 and not value.is_meta else None
        return "tensor", tuple(value.shape), str(value.dtype), item
    if isinstance(value, dict):
        # an empty entry is none: reading opt.state[p] (a defaultdict) makes one
        items = ((repr(k), _state_mark(v)) for k, v in value.items())
        return "dict", tuple(sorted(item for item in items if item[1] != _EMPTY))
    if isinstance(value, (list, tuple)):
        return "list", tuple(_state_mark(v) for v in value)
    return repr(value)  # repr: a NaN equals itself
