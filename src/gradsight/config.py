"""Global defaults, overridable per debugger: ``gradsight.options.memory_budget = 2 * 2**30``.

>>> import gradsight
>>> gradsight.options.memory_budget
536870912
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 2**20


@dataclass
class Options:
    memory_budget: int = 512 * MiB  # bytes of tensors kept for lazy inspection, per debugger
    # Keep every gradient when they total at most this; above, keep norms (and the gradients of the
    # nodes the user inspects, by re-running the step): holding all gradients slows backward 1.5–4×.
    keep_gradients_below: int = 32 * MiB
    live_interval: float = 0.5  # seconds: live mode captures at most one step per interval
    source_lines: bool = True  # record the forward source line of each node (runnable and live)

    def budget(self, override: int | None) -> int:
        if override is None:
            return self.memory_budget
        if not isinstance(override, int) or isinstance(override, bool) or override < 0:
            raise ValueError(f"memory_budget must be a number of bytes >= 0 (e.g. 256 * 2**20), not {override!r}")
        return override


options = Options()
