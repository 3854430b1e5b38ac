"""The model a live session follows: the hooks it puts on it, and the model's names as they are now.

Names are read at each captured step, not once when the debugger attached: a submodule replaced or
added since (a new head for fine-tuning, LoRA adapters) is named and its ops attributed, and one
replaced is not kept alive by gradsight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._inert import inert, restore
from .modules import compiling
from .names import plain_name


def model_names(model: torch.nn.Module) -> tuple[list[tuple[str, torch.nn.Module]], dict[torch.Tensor, str]]:
    """The model's modules and parameters with their names as they are now: ``names.module_names``
    and ``names.leaf_names_from_params`` in one walk of the modules (what comparing the modules and
    parameters with the last step's would cost too: ~1 ms per 1,000 modules, once per captured step)."""
    modules: list[tuple[str, torch.nn.Module]] = []
    leaves: dict[torch.Tensor, str] = {}
    for path, module in model.named_modules():
        modules.append((plain_name(path), module))
        for key, p in module._parameters.items():
            if p is not None and p not in leaves:
                leaves[p] = plain_name(f"{path}.{key}" if path else key)
    return modules, leaves


class ModelHook:
    """A hook on the user's model. A copy or a pickle of the model gets an inert one instead
    (see gradsight._inert): copies are not followed, and the session is never copied along."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if compiling():  # traced by dynamo (the model runs inside a torch.compile'd wrapper): stay out
            return None  # of its graph — tracing gradsight's capture code recompiled it again and again
        return self.fn(*args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> Callable[..., None]:
        return inert

    def __reduce__(self) -> tuple[Callable[[], Any], tuple[()]]:
        return restore, ()
