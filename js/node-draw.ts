// One node of the SVG graph: its <g> (the DOM automation contract of DESIGN §6: data-node-id,
// data-node-name, focusable (one of them a Tab stop: render.ts), role=button), box and label lines, and decorate(), which applies what
// changes from one backward to the next without moving the node (root, NaN / Inf, executed or
// pruned, the grad-norm bar), so a live update can restyle nodes in place.

import { s } from "./dom";
import { formatNumber } from "./format";
import { ownsKeys } from "./keys";
import {
  DETAIL_FONT,
  describeNode,
  LINE_HEIGHT,
  NAME_FONT,
  type NodeLabel,
  nonFinite,
  nonFiniteText,
  PAD_Y,
} from "./node-label";
import type { WireGraph, WireNode } from "./wire";

export function drawNode(node: WireNode, label: NodeLabel, isRoot: boolean, maxNorm: number): SVGGElement {
  const g = s("g", {
    class: `gs-node gs-kind-${node.kind}`,
    "data-node-id": node.id,
    "data-node-name": node.name,
    "data-kind": node.kind,
    // -1: focusable by the arrow keys and clicks; the renderer makes one node the Tab stop.
    tabindex: -1,
    role: "button",
    "aria-current": "false",
    ...ownsKeys("arrows enter"),
  });
  const rx = node.kind === "leaf" ? label.height / 2 : 4;
  g.append(s("title", {}), s("rect", { class: "gs-box", width: label.width, height: label.height, rx, ry: rx }));
  label.lines.forEach((line, i) => {
    const size = line.role === "name" ? NAME_FONT : DETAIL_FONT;
    const y = PAD_Y + i * LINE_HEIGHT + LINE_HEIGHT / 2;
    const attrs = { class: `gs-label gs-label-${line.role}`, x: label.width / 2, y, "font-size": size };
    g.append(s("text", { ...attrs, "text-anchor": "middle", "dominant-baseline": "central" }, line.text));
  });
  decorate(g, node, label, isRoot, maxNorm);
  return g;
}

/**
 * What changes from one backward to the next (live mode) without moving the node: root, NaN / Inf,
 * executed or pruned, and the grad-norm bar. Applied on draw and on a restyle.
 */
export function decorate(g: SVGGElement, node: WireNode, label: NodeLabel, isRoot: boolean, maxNorm: number): void {
  const { present: bad, count } = nonFinite(node);
  const weight = gradWeight(node.grad_norm, maxNorm);
  g.classList.toggle("gs-root", isRoot);
  g.classList.toggle("gs-nonfinite", bad);
  g.classList.toggle("gs-not-executed", node.executed === false);
  attr(g, "data-root", isRoot ? "true" : null);
  attr(g, "data-nonfinite", bad ? "true" : null);
  attr(g, "data-executed", node.executed === null ? null : String(node.executed));
  attr(g, "data-grad-norm", node.grad_norm === null ? null : String(node.grad_norm));
  attr(g, "data-grad-weight", weight === null ? null : weight.toFixed(2));
  const extras = [
    bad ? nonFiniteText(count) : null,
    node.executed === false ? "not executed in the last backward" : null,
    node.grad_norm === null ? null : `grad norm ${formatNumber(node.grad_norm)}`,
  ].filter((x) => x !== null);
  const description = [describeNode(node), ...extras].join(", ");
  g.setAttribute("aria-label", description);
  const title = g.querySelector("title");
  if (title) title.textContent = `${description}\nid ${node.id}`;
  let bar = g.querySelector<SVGRectElement>(".gs-norm-bar");
  if (weight === null) {
    bar?.remove();
    return;
  }
  // A thin bar along the bottom of the box: its length is the node's grad norm on a log scale.
  const inset = node.kind === "leaf" ? label.height / 2 : 4;
  const full = Math.max(0, label.width - 2 * inset);
  if (!bar) {
    bar = s("rect", { class: "gs-norm-bar", x: inset, y: label.height - 4, height: 2.5, rx: 1 });
    g.append(bar);
  }
  bar.setAttribute("width", String(weight > 0 ? Math.max(1, round(full * weight)) : 0));
}

/** Decades of grad norm the bar spans: a norm a million times below the graph's largest is empty. */
const NORM_DECADES = 6;

/** Grad norm on a log scale relative to the graph's largest (0..1); null when unknown. */
export function gradWeight(norm: number | null, maxNorm: number): number | null {
  if (norm === null) return null;
  if (!(norm > 0) || !(maxNorm > 0)) return 0;
  return Math.min(1, Math.max(0, 1 + Math.log10(norm / maxNorm) / NORM_DECADES));
}

export function maxGradNorm(graph: WireGraph): number {
  let max = 0;
  for (const n of graph.nodes)
    if (n.grad_norm !== null && Number.isFinite(n.grad_norm)) max = Math.max(max, n.grad_norm);
  return max;
}

function attr(el: Element, name: string, value: string | null): void {
  if (value === null) el.removeAttribute(name);
  else if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
