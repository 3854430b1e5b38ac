"""Big graphs in a real browser (JupyterLab 4 + headless Debian chromium), against torchviz.

    .venv/bin/python benchmarks/bench_browser.py [--sizes 1000 10000 50000] [--archs mlp transformer ...]

For each model and size, in one run: capture and wire time in Python, bytes on the wire, time from
the cell starting to the view's first complete paint (the view marks it with
``performance.mark("gradsight:painted")``), frame times while panning and zooming, and click →
inspector time; beside them torchviz's ``make_dot(...).source`` and, when Debian's graphviz is
installed, ``dot -Tsvg`` layout on the same graph (cut off after --dot-timeout seconds).
Prints a markdown table (copied into BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402
from playwright.sync_api import Page  # noqa: E402

from gradsight._capture.names import leaf_names_from_params  # noqa: E402
from gradsight._capture.records import CaptureOptions  # noqa: E402
from gradsight._capture.store import TensorStore  # noqa: E402
from gradsight._capture.tensors import captured_of  # noqa: E402
from gradsight.schema import comm_payload, graph_to_wire  # noqa: E402
from models import build  # noqa: E402
from tests.e2e.harness import chromium, jupyter_lab, open_and_run  # noqa: E402

CELL = """import sys, time, json
sys.path.insert(0, {here!r})
import torch, gradsight
from models import build
torch.manual_seed(0)
model, loss = build({arch!r}, {size})
t_start = time.time()
dbg = gradsight.debugger(loss, params=model)
print(json.dumps({{"t_start": t_start, "nodes": len(dbg.graph)}}))
dbg"""


def python_side(arch: str, size: int) -> dict[str, Any]:
    model, loss = build(arch, size)
    names = leaf_names_from_params(model)
    t0 = time.perf_counter()
    captured = captured_of([loss], CaptureOptions(leaf_names=names, store=TensorStore(2**29)))
    t1 = time.perf_counter()
    text, buffers = comm_payload(graph_to_wire(captured.graph))
    t2 = time.perf_counter()
    row: dict[str, Any] = {
        "nodes": len(captured.graph), "capture_s": t1 - t0, "wire_s": t2 - t1,
        "wire_bytes": len(text) + sum(len(b) for b in buffers),
    }  # fmt: skip
    row.update(torchviz_side(loss, dict(model.named_parameters())))
    return row


def torchviz_side(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, Any]:
    try:
        from torchviz import make_dot
    except ImportError:
        return {}
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10**7)
    try:
        t0 = time.perf_counter()
        source = make_dot(loss, params=params).source
        out: dict[str, Any] = {"torchviz_s": time.perf_counter() - t0}
    except RecursionError:
        return {"torchviz_s": "RecursionError"}
    finally:
        sys.setrecursionlimit(old)
    if shutil.which("dot"):
        t0 = time.perf_counter()
        try:
            subprocess.run(["dot", "-Tsvg", "-o", os.devnull], input=source, text=True, check=True,
                           timeout=ARGS.dot_timeout, capture_output=True)  # fmt: skip
            out["dot_s"] = time.perf_counter() - t0
        except subprocess.TimeoutExpired:
            out["dot_s"] = f"> {ARGS.dot_timeout:.0f}"
    return out


def browser_side(page: Page, lab: Any, arch: str, size: int) -> dict[str, Any]:
    open_and_run(page, lab.notebook(f"{arch}_{size}.ipynb", [CELL.format(here=HERE, arch=arch, size=size)]))
    widget = page.locator(".gradsight").first
    widget.wait_for(timeout=300_000)
    page.wait_for_function(
        "() => { const el = document.querySelector('.gradsight'); return el && el.dataset.painted; }",
        timeout=300_000,
    )
    printed = json.loads(page.locator(".jp-OutputArea-output pre").first.inner_text())
    painted = page.evaluate(
        "() => { const m = performance.getEntriesByName('gradsight:painted');"
        " return performance.timeOrigin + m[m.length - 1].startTime; }"
    )
    row: dict[str, Any] = {"first_paint_s": painted / 1000 - printed["t_start"]}
    row.update(pan_zoom(page))
    row["click_inspector_s"] = click_to_inspector(page)
    if page.locator('.gradsight [data-action="flat"]').count():
        row["flat_layout_s"] = page.evaluate(FLAT) / 1000
        flat = pan_zoom(page)
        row["flat_frame_ms_median"], row["flat_frame_ms_p95"] = flat["frame_ms_median"], flat["frame_ms_p95"]
    return row


# Switch the big view to the flat graph (every node laid out and drawn): click -> laid out -> drawn.
FLAT = """async () => {
    const layouts = () => performance.getEntriesByName('gradsight:layout').length;
    const busy = () => document.querySelector('.gradsight [data-gradsight="big"]').getAttribute('aria-busy') === 'true';
    const before = layouts();
    const t0 = performance.now();
    document.querySelector('.gradsight [data-action="flat"]').click();
    while (layouts() === before || busy()) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now() - t0;
}"""


def pan_zoom(page: Page) -> dict[str, Any]:
    area = page.locator('.gradsight [data-gradsight="graph"]').first
    box = area.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("() => window.__gradsight && window.__gradsight.frames && window.__gradsight.frames(true)")
    page.mouse.move(x, y)
    for i in range(20):
        page.mouse.wheel(0, -120 if i < 10 else 120)
        page.wait_for_timeout(16)
    page.mouse.down()
    for i in range(30):
        page.mouse.move(x + 10 * i, y + 5 * i)
        page.wait_for_timeout(16)
    page.mouse.up()
    page.wait_for_timeout(200)
    frames = page.evaluate("() => (window.__gradsight && window.__gradsight.frames) ? window.__gradsight.frames() : []")
    if not frames:
        return {"frame_ms_median": "n/a (SVG view)", "frame_ms_p95": "n/a"}
    frames = sorted(frames)
    return {"frame_ms_median": statistics.median(frames), "frame_ms_p95": frames[int(0.95 * (len(frames) - 1))]}


def click_to_inspector(page: Page) -> float:
    widget = page.locator(".gradsight").first
    target = widget.locator("[data-node-id]").first  # an SVG node, or an outline entry of the canvas view
    t0 = time.perf_counter()
    target.dispatch_event("click")  # wherever the pan/zoom left it
    widget.locator('[data-gradsight="inspector"][data-inspect-status="done"]').wait_for(timeout=60_000)
    return time.perf_counter() - t0


def fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


ARGS: argparse.Namespace


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--archs", nargs="+", default=["mlp", "resnet", "transformer", "rnn"])
    parser.add_argument("--dot-timeout", type=float, default=120.0)
    ARGS = parser.parse_args()
    torch.set_num_threads(1)
    cols = ["arch", "nodes", "capture_s", "wire_s", "wire_bytes", "first_paint_s", "frame_ms_median",
            "frame_ms_p95", "click_inspector_s", "flat_layout_s", "flat_frame_ms_median", "flat_frame_ms_p95",
            "torchviz_s", "dot_s"]  # fmt: skip
    rows = []
    with jupyter_lab() as lab, chromium() as browser:
        for arch in ARGS.archs:
            for size in ARGS.sizes:
                row = {"arch": arch, **python_side(arch, size)}
                context = browser.new_context(viewport={"width": 1400, "height": 950})
                try:
                    row.update(browser_side(context.new_page(), lab, arch, size))
                finally:
                    context.close()
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c, "–")) for c in cols) + " |")


if __name__ == "__main__":
    main()
