"""Warnings from inside a backward through the spy's wrapper, shown where they would be without gradsight.

A warning names the frame ``stacklevel`` frames up from the code that warned. In a %%gradsight cell
a backward call passes through frames gradsight put there: the spy's wrapper and
``BackwardSpy._call`` (spy.py) and, for ``Tensor.backward`` and ``torch.autograd.backward``, the
cell's torch-function mode (the call handed to ``handle_torch_function``, that function, and the
tracker's ``__torch_function__``). A warning raised inside the user's backward counted its stack
level into them: torch's "Full backward hook is firing…" (``stacklevel=5``, meant for the line that
calls ``loss.backward()``) named spy.py, where a plain cell names the user's line.

A backward call the spy does not watch passes through its wrapper too: another thread's, while the
cell runs (the wrapper watches the cell's thread only). Its warnings named spy.py where a plain cell
names torch's ``Tensor.backward`` or the user's line, so they are re-homed as well: one
:class:`Rehomed` is on for as long as the spy is installed, and each watched call puts another in
front of the filters the cell set by then.

While a :class:`Rehomed` is on, the warnings naming spy.py are caught — by a filter
for that module in front of the user's, so no "once"/"default" registry or "ignore" keyed to
gradsight decides — and each is re-issued at once with ``warn_explicit`` at the frame the same
stack level reaches when gradsight's frames are not counted, with that frame's module name and
registry, as the interpreter would: the user's filters decide, and "error" raises inside the
backward, as in a plain cell. A warning gradsight's own code raised, or whose frames cannot be
found, is shown as it was. A stack level reaching past the spy's frames is left alone: it names a
frame further down than it would without gradsight (source.py re-homes those naming its tracker).
"""

from __future__ import annotations

import os
import warnings
from types import FrameType

from torch.overrides import handle_torch_function

from .filters import Rehoming

_GRADSIGHT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_WARNINGS_FILE = warnings.__file__
_SHOW_MESSAGE = warnings._showwarnmsg.__code__  # type: ignore[attr-defined]  # C's warn calls it, then showwarning
_DISPATCH = handle_torch_function.__code__


class Rehomed(Rehoming):
    """Around a watched backward call, and around the cell (other threads' calls): warnings naming
    ``filename`` (the module ``module``: spy.py) re-issued where they would be without gradsight
    (:func:`unshifted`). Nests: each removes only its own filter."""

    def __init__(self, module: str, filename: str) -> None:
        super().__init__(module, filename, unshifted)

    def __enter__(self) -> Rehomed:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.exit()


def unshifted(showing: FrameType | None, filename: str, lineno: int) -> FrameType | None:
    """The frame a warning shown at ``filename:lineno`` would have named without gradsight's frames
    in the stack, from a frame of the ``showwarning`` call (``showing``); None for a warning
    gradsight's own code raised, or one whose frames are not found."""
    frame = showing
    while frame is not None and frame.f_code is not _SHOW_MESSAGE:
        frame = frame.f_back
    frame = None if frame is None else frame.f_back  # what called warnings.warn (C: no frame of its own)
    while frame is not None and frame.f_code.co_filename == _WARNINGS_FILE:
        frame = frame.f_back  # the pure-Python warnings.warn, should C's be missing
    stack: list[FrameType] = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    inserted = [f.f_code.co_filename.startswith(_GRADSIGHT) for f in stack]
    if not stack or inserted[0]:
        return None
    for i in range(len(stack) - 2):
        # gradsight's mode called by handle_torch_function, for the call that handed itself to it (a
        # second Tensor.backward frame): without the mode, that call runs the function itself
        if inserted[i] and stack[i + 1].f_code is _DISPATCH:
            inserted[i + 1] = inserted[i + 2] = True
    level = next((i for i, f in enumerate(stack) if f.f_code.co_filename == filename and f.f_lineno == lineno), None)
    outside = [f for f, gradsight in zip(stack, inserted, strict=True) if not gradsight]
    if level is None or level >= len(outside):
        return None
    return outside[level]
