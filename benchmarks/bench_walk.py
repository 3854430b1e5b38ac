"""Capture cost per node: walk, walk + statistics, wire, and torchviz's make_dot on the same graphs.

    .venv/bin/python benchmarks/bench_walk.py [--sizes 1000 10000 50000] [--archs mlp transformer]

Every variant runs interleaved on the same live graph in one process, so the ratios compare like
with like on a noisy shared machine. Prints a markdown table (copied into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gradsight._capture.names import leaf_names_from_params
from gradsight._capture.records import CaptureOptions
from gradsight._capture.walk import _sequence_nr as sequence_nr
from gradsight._capture.walk import _short_name as short_name
from gradsight._capture.walk import build, capture, collect, gc_paused
from gradsight._capture.walk import walk as walk_nodes
from gradsight.schema import comm_payload, graph_to_wire
from models import build as build_model


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def torchviz_fn(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> Callable[[], Any] | None:
    try:
        from torchviz import make_dot
    except ImportError:
        return None
    return lambda: make_dot(loss, params=params).source


def default_limit_status(fn: Callable[[], Any]) -> str:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        fn()
        return "ok"
    except RecursionError:
        return "RecursionError"
    finally:
        sys.setrecursionlimit(old)


def run(arch: str, size: int, repeats: int) -> dict[str, Any]:
    model, loss = build_model(arch, size)
    names = leaf_names_from_params(model)
    params = dict(model.named_parameters())
    opts = CaptureOptions(leaf_names=names, stats=False)
    collected, _ = collect([loss.grad_fn], opts)
    graph = build(collected)

    def structure() -> None:
        # What torchviz's make_dot reads: names, edges, parameter names (no saved values, no shapes).
        with gc_paused():
            order, _, _ = walk_nodes([loss.grad_fn])
            for node in order:
                name = short_name(node)
                sequence_nr(node)
                if name == "AccumulateGrad":
                    names.get(node.variable)

    def walk() -> None:
        with gc_paused():
            collect([loss.grad_fn], opts)

    def graph_phase() -> None:
        collected.ids = []  # order and ids too, every time
        with gc_paused():
            build(collected)

    def total() -> None:
        comm_payload(graph_to_wire(capture([loss.grad_fn], opts)))

    stats = lambda: capture([loss.grad_fn], CaptureOptions(leaf_names=names, stats=True))  # noqa: E731
    wire = lambda: comm_payload(graph_to_wire(graph))  # noqa: E731
    variants: dict[str, Callable[[], Any]] = {
        "structure": structure,
        "walk": walk, "graph": graph_phase, "wire": wire, "walk+graph+wire": total, "capture_with_stats": stats,
    }  # fmt: skip
    viz = torchviz_fn(loss, params)
    if viz is not None:
        variants["torchviz"] = viz
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10**7)  # torchviz recurses once per node of depth
    times: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for _ in range(repeats):
            for key, fn in variants.items():
                times[key].append(timed(fn))
    finally:
        sys.setrecursionlimit(old)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(graph)
    text, buffers = wire()
    row: dict[str, Any] = {"arch": arch, "nodes": n, "wire_bytes": len(text) + sum(len(b) for b in buffers)}
    for key, t in med.items():
        row[f"{key}_us_per_node"] = t / n * 1e6
    if viz is not None:
        row["torchviz_over_structure"] = med["torchviz"] / med["structure"]
        row["torchviz_over_walk"] = med["torchviz"] / med["walk"]
        row["torchviz_over_walk+graph+wire"] = med["torchviz"] / med["walk+graph+wire"]
        row["torchviz_default_limit"] = default_limit_status(viz)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--archs", nargs="+", default=["mlp", "resnet", "transformer"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [run(a, s, args.repeats) for a in args.archs for s in args.sizes]
    cols = ["arch", "nodes", "structure_us_per_node", "walk_us_per_node", "graph_us_per_node", "wire_us_per_node",
            "walk+graph+wire_us_per_node", "capture_with_stats_us_per_node", "wire_bytes",
            "torchviz_us_per_node", "torchviz_over_structure", "torchviz_over_walk", "torchviz_over_walk+graph+wire",
            "torchviz_default_limit"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r.get(c), float) else str(r.get(c, "–")) for c in cols]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
