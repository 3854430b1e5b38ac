"""Global defaults, overridable per debugger: ``gradsight.options.memory_budget = 2 * 2**30``.

>>> import gradsight
>>> gradsight.options.memory_budget
536870912
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

MiB = 2**20


@dataclass
class Options:
    memory_budget: int = 512 * MiB  # bytes of tensors kept for lazy inspection, per debugger
    # Runnable and live debuggers keep every saved tensor and gradient when they total at most this.
    # Above, they keep shapes and gradient norms, and a runnable debugger re-runs the step to keep the
    # tensors of a node the user inspects: holding everything made backward 1.5–4× slower (the
    # allocator can no longer reuse freed activations and gradients; benchmarks/bench_run.py).
    keep_all_below: int = 32 * MiB
    live_interval: float = 0.5  # seconds: live mode captures at most one step per interval
    # ... and spends at most this share of the training time in captured steps (a captured step costs
    # ~2× a plain one), so a fast training loop stays within ~1.1× while interactive steps are all shown
    live_share: float = 0.1
    source_lines: bool = True  # record the forward source line of each node (runnable, live and %%gradsight cells)

    def __setattr__(self, name: str, value: object) -> None:
        """Checked when set, so a bad value fails here and not in a later debugger."""
        check = _CHECKS.get(name)
        if check is None:
            raise AttributeError(f"gradsight.options has no {name!r}; it has {', '.join(_CHECKS)}")
        object.__setattr__(self, name, check(name, value))

    def budget(self, override: int | None) -> int:
        return self.memory_budget if override is None else _bytes("memory_budget", override)


def _bytes(name: str, value: object) -> int:
    try:  # an int, or an integer like numpy.int64 (operator.index), never a float or a bool
        count = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        count = -1
    if isinstance(value, bool) or count < 0:
        raise ValueError(f"{name} must be a number of bytes >= 0 (e.g. 256 * 2**20), not {value!r}")
    return count


def _seconds(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:  # NaN too
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _share(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:  # NaN fails too
        raise ValueError(f"{name} must be a fraction of the training time in (0, 1], e.g. 0.1, not {value!r}")
    return float(value)


def as_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


_CHECKS = {"memory_budget": _bytes, "keep_all_below": _bytes, "live_interval": _seconds, "live_share": _share,
           "source_lines": as_flag}  # fmt: skip


options = Options()
