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
    # Runnable and live debuggers keep every saved tensor and gradient when they total at most this.
    # Above, they keep shapes and gradient norms, and a runnable debugger re-runs the step to keep the
    # tensors of a node the user inspects: holding everything made backward 1.5–4× slower (the
    # allocator can no longer reuse freed activations and gradients; benchmarks/bench_run.py).
    keep_all_below: int = 32 * MiB
    live_interval: float = 0.5  # seconds: live mode captures at most one step per interval
    # ... and spends at most this share of the training time in captured steps (a captured step costs
    # ~2× a plain one), so a fast training loop stays within ~1.1× while interactive steps are all shown
    live_share: float = 0.1
    source_lines: bool = True  # record the forward source line of each node (runnable and live)

    def budget(self, override: int | None) -> int:
        if override is None:
            return self.memory_budget
        if not isinstance(override, int) or isinstance(override, bool) or override < 0:
            raise ValueError(f"memory_budget must be a number of bytes >= 0 (e.g. 256 * 2**20), not {override!r}")
        return override


options = Options()
