"""Warning filters gradsight puts in place for a while, without re-arming the user's "once" warnings.

``warnings.filterwarnings`` and removing a filter as ``catch_warnings`` does bump the filters'
version, which empties every module's ``__warningregistry__``: each "once"/"default" warning of the
session showed again after every cell, and every captured live step. gradsight's filters match only
warnings it means to handle ("ignore" and "always" record nothing in a registry), so the decisions
cached for every other warning stay right: the filter goes in and out of ``warnings.filters``
directly, with the version left alone.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any


def add_filter(action: str, *, message: str = "", category: type[Warning] = Warning, module: str = "") -> Any:
    """Put a filter in front of the others, as ``warnings.filterwarnings`` does; returns it, for
    :func:`remove_filter`."""
    entry = (action, re.compile(message, re.I) if message else None, category,
             re.compile(module) if module else None, 0)  # fmt: skip
    filters: list[Any] = warnings.filters  # type: ignore[assignment]  # a list, typed as a Sequence
    filters.insert(0, entry)
    return entry


def remove_filter(entry: Any) -> None:
    """Take out a filter :func:`add_filter` put in (the user may have reset the filters since)."""
    filters: list[Any] = warnings.filters  # type: ignore[assignment]
    for i, f in enumerate(filters):
        if f is entry:
            del filters[i]
            return


class Rehoming:
    """Warnings naming ``filename`` (the module ``module``, gradsight's), caught while this is on and
    re-issued at once at the frame ``home`` finds for them (from a frame of the ``showwarning``
    call, the file and line the warning named; None: shown as it was) — by a filter for that module
    in front of the user's, so no "once"/"default" registry or "ignore" keyed to gradsight decides.
    Re-issued with ``warn_explicit`` with that frame's module name and registry, as the interpreter
    would: the user's filters decide ("error" raises there, as without gradsight). Every other
    warning passes through untouched; on exit only this filter is removed, and ``showwarning`` put
    back if it is still ours (the user's code may have changed it). ``source._AtOnce`` (a cell's
    ops) and ``spy_warnings.Rehomed`` (a cell's backward calls)."""

    def __init__(self, module: str, filename: str, home: Callable[[FrameType, str, int], FrameType | None]) -> None:
        self._module, self._file, self._home = module, filename, home
        self._filter: Any = None
        self._shown: Any = None

    def enter(self) -> None:
        self._shown = warnings.showwarning
        self._filter = add_filter("always", module=re.escape(self._module) + r"\Z")
        warnings.showwarning = self._show

    def exit(self) -> None:
        if self._filter is not None:
            remove_filter(self._filter)
        self._filter = None
        if warnings.showwarning == self._show:
            warnings.showwarning = self._shown

    def _show(self, message: Any, category: Any, filename: str, lineno: int, file: Any = None,
              line: str | None = None) -> None:  # fmt: skip
        __tracebackhide__ = True  # an "error" filter raises here: IPython shows the user's frames
        frame = None
        if filename == self._file:
            try:
                frame = self._home(sys._getframe(1), filename, lineno)
            except Exception:  # never raises into the user's code: shown where it was
                frame = None
        if frame is None:
            self._shown(message, category, filename, lineno, file, line)
            return
        module_globals = frame.f_globals
        registry = module_globals.setdefault("__warningregistry__", {})
        warnings.warn_explicit(message, category, frame.f_code.co_filename, frame.f_lineno,
                               module=module_globals.get("__name__", "<string>"), registry=registry,
                               module_globals=module_globals)  # fmt: skip
