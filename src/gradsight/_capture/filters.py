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
import warnings
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
