"""Costs of the debugger modes, as ratios taken side by side in one process.

    .venv/bin/python benchmarks/bench_run.py            # all sections
    .venv/bin/python benchmarks/bench_run.py --section capture|phases|live|click|memory|held
    .venv/bin/python benchmarks/bench_run.py --section live --model typical   # only those models

- capture: a runnable debugger's run (forward + backward observed, graph built) ÷ a plain
  forward + backward. Target ≤ 1.15×. Three kinds of model (benchmarks/models.py REALISTIC):
  ~1k-node stacks with the middle tensor sizes of research/autograd-facts.md §5.3 (per-node cost
  dominates: the hard case), the same stacks with bigger tensors, and typical models (a few wide
  layers, a CIFAR-sized ResNet, a 4-layer encoder).
- phases: where a runnable debugger's extra time goes, per model: its forward (module and source
  tracking), reading the graph before backward, installing and removing hooks, its backward (hooks
  and gradient norms), building the graph, and the rest (RNG and buffer snapshots, results), beside
  a plain forward and backward timed apart. Medians of interleaved repeats. The last two columns are
  floors of "gradients through every node": a plain step plus nothing but a prehook that takes the
  gradient's norm on every node, and on every node but those whose norm is their child's
  (hooks.derivable, as runs do) — no walk of saved values, no modules, no graph.
- live: a training step (forward, loss, backward, SGD step) with a live debugger attached ÷ without,
  averaged over blocks of steps (captured steps included; 30-step blocks for the default policy).
  Target ≤ 1.2×. Measured with the default capture policy (≤ 1 step per 0.5 s and ≤ 10% of the
  time) and with every step captured.
- click: inspect request → reply (statistics, histogram, preview, encoding) for a node whose saved
  tensor has 10M elements. Target ≤ 100 ms.
- memory: peak RSS added by a debugger run over a plain forward + backward, in fresh processes.
- held: what a debugger holds over time, in fresh processes (glibc set so RSS tracks tensors): RSS
  after 300 training steps of a model fed a 4 MB batch per step, with every step captured by a live
  debugger and without one, and how many of the 300 batches are still alive (the run history keeps
  8 steps); and the bytes of the storages that 8 re-runs of a runnable debugger hold together
  against its memory budget (one budget per debugger).
- vanishing: ``gs.debugger(...)`` end to end on a 1,000-layer ReLU MLP whose gradients vanish
  (most leaves get exactly zero) and on a 1,000-layer Tanh MLP whose gradients are NaN/Inf, and the
  part of it that explains every such leaf.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(__file__))
import gradsight as gs
from gradsight._capture import why
from gradsight._capture.hooks import derivable
from gradsight._capture.records import CaptureOptions
from gradsight._capture.run import run
from gradsight._capture.specs import spec_for_model
from gradsight._capture.walk import collect, walk
from models import REALISTIC, realistic


def _median_pair(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[float, float]:
    ta, tb = [], []
    a(), b()  # warm up
    for _ in range(repeats):
        for fn, out in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def capture(repeats: int) -> None:
    print("\n### Runnable debugger: capture overhead (target ≤ 1.15×)\n")
    print("| model | nodes | plain fwd+bwd ms | debugger run ms | ratio |")
    print("|---|---|---|---|---|")
    for name in _models():
        model, x = realistic(name)
        spec = spec_for_model(model, x, lambda out: out.pow(2).mean(), None, gs.options.memory_budget, True)
        result: list[Any] = [None]  # the last run only, as `dbg = gs.debugger(...)` in a notebook keeps
        tp, td = _median_pair(_plain_step(model, x), lambda s=spec, r=result: r.__setitem__(-1, run(s)), repeats)
        nodes = len(result[-1].captured.graph)
        print(f"| {name} | {nodes} | {tp * 1e3:.1f} | {td * 1e3:.1f} | {td / tp:.2f}× |")


PHASES = ("forward", "read graph", "hooks", "backward", "build")


def phases(repeats: int) -> None:
    print("\n### Runnable debugger: where the extra time goes (ms; +Δ over the plain run's same part)\n")
    print("| model | plain fwd | plain bwd | forward | read graph | hooks | backward | build | rest | ratio "
          "| norm hooks on every node | norm hooks, derived skipped |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in _models():
        model, x = realistic(name)
        spec = spec_for_model(model, x, lambda out: out.pow(2).mean(), None, gs.options.memory_budget, True)
        plain: dict[str, list[float]] = {"fwd": [], "bwd": []}
        seen: dict[str, list[float]] = {k: [] for k in (*PHASES, "total", "floor", "floor2")}
        params = list(model.parameters())
        y = model(x).pow(2).mean()  # the walk order is the same every forward: find the derived nodes once
        skip = set(derivable(collect([y.grad_fn], CaptureOptions(stats=False))[0], ()))
        del y
        for i in range(repeats + 1):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            y = model(x).pow(2).mean()
            t1 = time.perf_counter()
            y.backward()
            t2 = time.perf_counter()
            result = run(spec)
            t3 = time.perf_counter()
            del y, result.captured
            t4 = time.perf_counter()
            _norm_hooks_only(model, x, params, set())
            t5 = time.perf_counter()
            _norm_hooks_only(model, x, params, skip)
            t6 = time.perf_counter()
            if i:  # the first round warms up
                plain["fwd"].append(t1 - t0)
                plain["bwd"].append(t2 - t1)
                seen["total"].append(t3 - t2)
                seen["floor"].append(t5 - t4)
                seen["floor2"].append(t6 - t5)
                for k in PHASES:
                    seen[k].append(result.phases[k])
        med = {k: statistics.median(v) * 1e3 for k, v in (plain | seen).items()}
        rest = med["total"] - sum(med[k] for k in PHASES)
        fwd = f"{med['forward']:.1f} ({med['forward'] - med['fwd']:+.1f})"
        bwd = f"{med['backward']:.1f} ({med['backward'] - med['bwd']:+.1f})"
        ratio = med["total"] / (med["fwd"] + med["bwd"])
        floor = med["floor"] / (med["fwd"] + med["bwd"])
        floor2 = med["floor2"] / (med["fwd"] + med["bwd"])
        print(f"| {name} | {med['fwd']:.1f} | {med['bwd']:.1f} | {fwd} | {med['read graph']:.1f} | {med['hooks']:.1f} "
              f"| {bwd} | {med['build']:.1f} | {rest:.1f} | {ratio:.2f}× | {floor:.2f}× | {floor2:.2f}× |")  # fmt: skip


def _norm_hooks_only(model: torch.nn.Module, x: torch.Tensor, params: list[torch.Tensor], skip: set[int]) -> None:
    """A plain step plus only what per-node gradient norms cannot do without: a prehook per node
    (but those in ``skip``, walk indices)."""
    y = model(x).pow(2).mean()
    order, _, _ = walk([y.grad_fn])
    norms: list[torch.Tensor] = []
    handles = [
        node.register_prehook(
            lambda grads: norms.append(torch.linalg.vector_norm(grads[0])) if grads[0] is not None else None
        )
        for i, node in enumerate(order)
        if i not in skip and node.name() != "torch::autograd::AccumulateGrad"
    ]
    del order
    torch.autograd.grad(y, params, allow_unused=True)
    for h in handles:
        h.remove()
    torch.stack(norms).tolist()


def _plain_step(
    model: torch.nn.Module, x: torch.Tensor, opt: torch.optim.Optimizer | None = None
) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        if opt is not None:
            opt.step()

    return step


def live(repeats: int) -> None:
    print("\n### Live mode: overhead per training step (target ≤ 1.2×)\n")
    print("| model | plain step ms | live, default interval ms | ratio | live, every step ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name in _models():
        model, x = realistic(name)
        step = _plain_step(model, x, torch.optim.SGD(model.parameters(), lr=1e-6))
        step()
        times: dict[str, list[float]] = {"plain": [], "default": [], "every": []}
        for _ in range(max(1, repeats // 2)):  # blocks of steps, interleaved, so drift hits all three alike
            for key, interval in (("plain", None), ("default", gs.options.live_interval), ("every", 0.0)):
                times[key].extend(_steps(model, step, interval, 30 if key == "default" else 12))
        # means, not medians: the amortized cost, captured steps included
        base, default, every = (statistics.fmean(times[k]) for k in ("plain", "default", "every"))
        print(f"| {name} | {base * 1e3:.1f} | {default * 1e3:.1f} | {default / base:.2f}× | "
              f"{every * 1e3:.1f} | {every / base:.2f}× |")  # fmt: skip


def _steps(model: torch.nn.Module, step: Callable[[], None], interval: float | None, n: int) -> list[float]:
    """Time ``n`` training steps, with a live debugger attached when ``interval`` is not None."""
    old = gs.options.live_interval, gs.options.live_share
    dbg = None
    if interval is not None:
        gs.options.live_interval = interval
        if interval == 0.0:
            gs.options.live_share = 1.0  # every step, no share limit: the worst case
        dbg = gs.debugger(model)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            out.append(time.perf_counter() - t0)
    finally:
        if dbg is not None:
            dbg.close()
        gs.options.live_interval, gs.options.live_share = old
    return out


def click(repeats: int) -> None:
    print("\n### Click → inspector for a saved tensor of 10M elements (target ≤ 100 ms)\n")
    model = torch.nn.Linear(1000, 10)
    x = torch.randn(10_000, 1000)  # AddmmBackward0 saves x: 10M floats
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).mean())
    node = dbg.graph.find("AddmmBackward0")[0].id
    sent: list[Any] = []
    dbg.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore[method-assign]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dbg._on_msg(dbg, {"type": "inspect", "request_id": "b", "node": node}, [])
        times.append(time.perf_counter() - t0)
    content, buffers = sent[-1]
    assert content["ok"], content
    size = sum(len(b) for b in buffers)
    print(f"| saved tensor | elements | median ms | min ms | bytes sent |\n|---|---|---|---|---|\n"
          f"| `_saved_mat1` (10000, 1000) | {x.numel():,} | {statistics.median(times) * 1e3:.1f} | "
          f"{min(times) * 1e3:.1f} | {size:,} |")  # fmt: skip


MEMORY_CHILD = r"""
import os, resource, sys
sys.path.insert(0, {here!r})
import torch
from models import realistic
import gradsight as gs
from gradsight._capture.run import run
from gradsight._capture.specs import spec_for_model
torch.set_num_threads(1)
model, x = realistic({name!r})
{status}
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status_mb('VmRSS')
if {mode!r} == "plain":
    model(x).pow(2).mean().backward()
else:
    spec = spec_for_model(model, x, lambda out: out.pow(2).mean(), None, gs.options.memory_budget, True)
    result = run(spec)
print(status_mb('VmHWM') - base)
"""


STATUS_MB = """def status_mb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024"""


def _run_child(template: str, **fields: str) -> str:
    """Run ``template`` (formatted with ``fields`` and ``here``) in a fresh process whose glibc returns
    freed memory at once, so RSS tracks live tensors; its stdout."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="4096", MALLOC_TRIM_THRESHOLD_="0", MALLOC_ARENA_MAX="1")
    code = template.format(here=os.path.dirname(os.path.abspath(__file__)), status=STATUS_MB, **fields)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def memory(_repeats: int) -> None:
    print("\n### Peak memory added by a debugger run (fresh process each, glibc set so RSS tracks tensors)\n")
    print("| model | plain fwd+bwd peak MB | debugger run peak MB | added MB | ratio |")
    print("|---|---|---|---|---|")
    for name in _models():
        peaks = {}
        for mode in ("plain", "debugger"):
            out = _run_child(MEMORY_CHILD, name=name, mode=mode)
            peaks[mode] = float(out.strip().splitlines()[-1])
        added = peaks["debugger"] - peaks["plain"]
        print(f"| {name} | {peaks['plain']:.0f} | {peaks['debugger']:.0f} | {added:.0f} | "
              f"{peaks['debugger'] / peaks['plain']:.2f}× |")  # fmt: skip


HELD_CHILD = """
import gc, sys, weakref
sys.path.insert(0, {here!r})
import torch, gradsight as gs
from torch import nn
torch.set_num_threads(1)
torch.manual_seed(0)
gs.options.live_interval, gs.options.live_share = 0.0, 1.0
model = nn.Sequential(nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, 1))
{status}
dbg = gs.debugger(model) if {mode!r} == "live" else None
base, refs = status_mb('VmRSS'), []
for _ in range(300):
    x = torch.randn(1024, 1024)  # 4 MB
    refs.append(weakref.ref(x))
    model(x).pow(2).mean().backward()
    del x
print(status_mb('VmRSS') - base, sum(r() is not None for r in refs), gc.get_stats()[2]["collections"])
"""


def held(_repeats: int) -> None:
    print("\n### What a debugger holds over time (fresh process each, glibc set so RSS tracks tensors)\n")
    print("| 300 steps, 4 MB batch each | RSS growth MB | batches alive | full GC collections |")
    print("|---|---|---|---|")
    for mode in ("plain", "live"):
        growth, alive, full = _run_child(HELD_CHILD, mode=mode).split()
        label = "plain loop" if mode == "plain" else "live debugger, every step captured"
        print(f"| {label} | {float(growth):.0f} | {alive} | {full} |")
    model, x = realistic("mlp w256 b128")
    budget = 64 << 20
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).mean(), memory_budget=budget)
    for i in range(7):
        dbg.rerun(requires_grad={"layers.0": bool(i % 2)})
    storages: dict[int, int] = {}
    kept = 0
    for record in dbg._runs.records:
        store = getattr(record.captured, "store", None)
        kept += 0 if store is None else store.kept_bytes
        for t in [] if store is None else store._tensors.values():
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
    dbg.close()
    print("\n| runnable debugger, 8 runs of mlp w256 b128 | budget MB | held together MB "
          "| runs' kept bytes summed MB |")  # fmt: skip
    print("|---|---|---|---|")
    print(f"| one budget for the debugger | {budget / 2**20:.0f} | {sum(storages.values()) / 2**20:.1f} | "
          f"{kept / 2**20:.1f} |")  # fmt: skip


def vanishing(repeats: int) -> None:
    print("\n### Vanishing and NaN gradients: explaining every such leaf\n")
    print("| model | nodes | leaves explained | gs.debugger() s | explaining them ms |")
    print("|---|---|---|---|---|")
    torch.manual_seed(0)
    relu = torch.nn.Sequential(*[m for _ in range(1000) for m in (torch.nn.Linear(32, 32), torch.nn.ReLU())])
    tanh = torch.nn.Sequential(*[m for _ in range(1000) for m in (torch.nn.Linear(16, 16), torch.nn.Tanh())])
    x, x16 = torch.randn(8, 32), torch.randn(4, 16)

    def nan_loss() -> torch.Tensor:
        y = tanh(x16)
        return (y - y.detach()).sqrt().sum()  # sqrt's derivative at 0: Inf, then NaN below it

    cases = {
        "ReLU MLP 1000x32 b8, gradients vanish to zero": lambda: gs.debugger(
            relu, inputs=x, loss=lambda out: out.pow(2).mean()
        ),
        "Tanh MLP 1000x16 b4 under sqrt(0): NaN/Inf": lambda: gs.debugger(nan_loss),
    }
    for name, make in cases.items():
        total, explain = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            dbg = make()
            total.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            why.explain_all(dbg._target.leaves(), gs.Toggles(), dbg.graph)
            explain.append(time.perf_counter() - t0)
        print(f"| {name} | {len(dbg.graph)} | {len(dbg.graph.missing)} | {statistics.median(total):.2f} | "
              f"{statistics.median(explain) * 1e3:.1f} |")  # fmt: skip


_ONLY: list[str] = []  # --model: names containing one of these


def _models() -> list[str]:
    """The models of benchmarks/models.py REALISTIC that ``--model`` keeps (all without it)."""
    return [n for n in REALISTIC if not _ONLY or any(o in n for o in _ONLY)]


SECTIONS = {
    "capture": capture,
    "phases": phases,
    "live": live,
    "click": click,
    "memory": memory,
    "held": held,
    "vanishing": vanishing,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", choices=sorted(SECTIONS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", action="append", default=[],
                        help="only the models whose name contains this text, e.g. --model typical")  # fmt: skip
    args = parser.parse_args()
    _ONLY.extend(args.model)
    torch.set_num_threads(1)
    for name in args.section or list(SECTIONS):
        SECTIONS[name](args.repeats)


if __name__ == "__main__":
    main()
