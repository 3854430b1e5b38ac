"""Cyclic-GC collections a live debugger sets off, against plain training steps, in one process.

    .venv/bin/python benchmarks/bench_live_gc.py [--steps 40] [--model "transformer d128 s64 b4"]

Counts the collections of each generation (``gc.callbacks``) and the time spent in them during
``--steps`` training steps without a debugger, with a live debugger at the default capture policy,
and with every step captured. A full (generation 2) collection scans every object of the session,
so gradsight's own transient objects must not set them off (see ARCHITECTURE, "The GC is paused").
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
import gradsight as gs
from bench_run import _plain_step, _steps
from models import realistic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="transformer d128 s64 b4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, x = realistic(args.model)
    step = _plain_step(model, x, torch.optim.SGD(model.parameters(), lr=1e-6))
    step()
    seen = [[0, 0.0] for _ in range(3)]
    started = [0.0]

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            seen[info["generation"]][0] += 1
            seen[info["generation"]][1] += time.perf_counter() - started[0]

    gc.callbacks.append(count)
    print(f"\n### GC collections over {args.steps} steps of {args.model}\n")
    print("| mode | step time ms | gen 0 | gen 1 | gen 2 (full) | ms in full collections |")
    print("|---|---|---|---|---|---|")
    for mode, interval in (("plain", None), ("live, default", gs.options.live_interval), ("live, every step", 0.0)):
        for s in seen:
            s[0], s[1] = 0, 0.0
        times = _steps(model, step, interval, args.steps)
        counts = " | ".join(str(n) for n, _ in seen)
        print(f"| {mode} | {sum(times) * 1e3:.0f} | {counts} | {seen[2][1] * 1e3:.0f} |")
    gc.callbacks.remove(count)


if __name__ == "__main__":
    main()
