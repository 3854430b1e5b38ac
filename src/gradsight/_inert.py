"""The inert hook a copy or a pickle of a followed model gets in place of gradsight's live hooks.

A live debugger puts two forward hooks on the user's model. ``copy.deepcopy(model)`` (an EMA model,
a snapshot) and ``torch.save(model)`` copy a module's hooks with it; gradsight's would drag the
widget along (which cannot be copied or pickled, so both failed). Copies get :func:`inert`
instead: the copy is not followed. Kept at this path so that models saved with a debugger attached
load wherever gradsight is installed.
"""

from __future__ import annotations

from typing import Any


def inert(*args: Any, **kwargs: Any) -> None:
    """A forward (pre-)hook that does nothing."""
    return


def restore() -> Any:
    """What unpickling a gradsight hook gives: :func:`inert`."""
    return inert
