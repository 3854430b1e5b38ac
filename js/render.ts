// SVG renderer of a laid-out graph: one <g> per node (node-draw.ts: the DOM automation contract of
// DESIGN §6, data-node-id, data-node-name, focusable, role=button) and one <path> per edge, inside a
// viewport group that panzoom.ts transforms; restyle() updates node values in place (live mode).
// Events are delegated to the node layer, so 2,000 nodes cost two listeners, not 4,000.
// The graph is one Tab stop (a roving tabindex, as in the WAI-ARIA grid and tree patterns): one node
// has tabindex 0 — the selected one, else the last one the keyboard moved to, else the first root —
// and every other -1; the arrow keys move between nodes (navigate.ts). 2,000 nodes are not 2,000 Tab
// presses between the toolbar and the inspector.

import { s } from "./dom";
import { plainKey } from "./keys";
import type { Direction, Layout, Point } from "./layout";
import { keyToStep, Neighbours } from "./navigate";
import { decorate, drawNode, maxGradNorm } from "./node-draw";
import { type NodeLabel, nodeLabel, nonFiniteText } from "./node-label";
import type { ViewState } from "./state";
import type { WireGraph } from "./wire";

export interface RendererEvents {
  /** The user clicked a node or pressed Enter / Space on it. */
  select(id: string): void;
  /** Keyboard focus moved to a node (arrow keys): the view should keep it on screen. */
  focus(id: string): void;
}

let instances = 0;

export class GraphRenderer {
  readonly svg: SVGSVGElement;
  readonly viewport: SVGGElement;
  private readonly edgeLayer: SVGGElement;
  private readonly nodeLayer: SVGGElement;
  private readonly markerId: string;
  private nodeEls = new Map<string, SVGGElement>();
  private edgeEls = new Map<string, SVGPathElement[]>();
  private neighbours: Neighbours | null = null;
  private direction: Direction = "TB";
  private selected: string | null = null;
  /** The node with tabindex 0 (the graph's one Tab stop). */
  private tabStop: string | null = null;
  private readonly onClick = (e: MouseEvent): void => this.handleClick(e);
  private readonly onKey = (e: KeyboardEvent): void => this.handleKey(e);
  private readonly onOver = (e: Event): void => this.hover(this.nodeIdOf(e.target), true);
  private readonly onOut = (e: Event): void => this.hover(this.nodeIdOf(e.target), false);

  constructor(
    private readonly events: RendererEvents,
    private readonly state: ViewState,
  ) {
    // Marker ids are document-global: two widgets on one page must not share them.
    this.markerId = `gs-arrow-${++instances}`;
    this.edgeLayer = s("g", { class: "gs-edges" });
    this.nodeLayer = s("g", { class: "gs-nodes" });
    this.viewport = s("g", { class: "gs-viewport" }, this.edgeLayer, this.nodeLayer);
    this.svg = s(
      "svg",
      {
        class: "gs-svg",
        role: "group",
        "aria-label": "backward graph: arrow keys move between nodes, Enter selects a node",
        width: "100%",
        height: "100%",
      },
      s("defs", {}, arrow(this.markerId, "gs-arrow"), arrow(`${this.markerId}-sel`, "gs-arrow gs-arrow-selected")),
      this.viewport,
    );
    this.nodeLayer.addEventListener("click", this.onClick);
    this.nodeLayer.addEventListener("keydown", this.onKey);
    this.nodeLayer.addEventListener("mouseover", this.onOver);
    this.nodeLayer.addEventListener("mouseout", this.onOut);
  }

  /** Replace the drawing with `graph` placed by `layout`. */
  draw(graph: WireGraph, layout: Layout, labels: ReadonlyMap<string, NodeLabel>): void {
    this.direction = layout.direction;
    const neighbours = new Neighbours(graph, layout);
    this.neighbours = neighbours;
    this.nodeEls = new Map();
    this.edgeEls = new Map();
    const roots = new Set(graph.roots);
    const byId = new Map(graph.nodes.map((n) => [n.id, n]));
    const maxNorm = maxGradNorm(graph);
    // Fragments, not replaceChildren(...array): spreading 100k arguments overflows the stack.
    const edges = document.createDocumentFragment();
    for (const e of layout.edges) {
      const path = s("path", {
        class: e.count > 1 ? "gs-edge gs-edge-multi" : "gs-edge",
        d: edgePath(e.points, layout.direction),
        "data-from": e.from,
        "data-to": e.to,
        "data-count": e.count > 1 ? e.count : null,
        "marker-end": `url(#${this.markerId})`,
      });
      this.indexEdge(e.from, path);
      this.indexEdge(e.to, path);
      edges.append(path);
    }
    const nodes = document.createDocumentFragment();
    for (const p of layout.nodes) {
      const node = byId.get(p.id);
      if (!node) continue;
      const el = drawNode(node, labels.get(p.id) ?? nodeLabel(node), roots.has(node.id), maxNorm);
      el.setAttribute("transform", `translate(${round(p.cx - p.width / 2)},${round(p.cy - p.height / 2)})`);
      this.nodeEls.set(node.id, el);
      nodes.append(el);
    }
    // Replacing the nodes drops keyboard focus; give it back to the node with the same id. (Read
    // activeElement here rather than listen for focusin: chromium makes an SVG <g> with focus
    // listeners a tab stop of its own.)
    const hadFocus = this.nodeLayer.contains(document.activeElement);
    this.state.focused = hadFocus ? this.nodeIdOf(document.activeElement) : null;
    this.edgeLayer.replaceChildren(edges);
    this.nodeLayer.replaceChildren(nodes);
    const keep = this.selected;
    const stop = this.tabStop;
    this.selected = null;
    this.tabStop = null;
    this.setSelected(keep);
    if (this.tabStop === null) this.setTabStop(this.has(stop) ? stop : neighbours.first());
    if (hadFocus && this.has(this.state.focused)) this.setTabStop(this.state.focused);
    if (hadFocus && this.state.focused !== null) this.nodeEls.get(this.state.focused)?.focus();
  }

  /**
   * Same nodes, edges and labels, new values (live mode after a training step): update what each
   * node shows in place, without a new layout or losing focus, hover or selection.
   */
  restyle(graph: WireGraph, labels: ReadonlyMap<string, NodeLabel>): void {
    const roots = new Set(graph.roots);
    const maxNorm = maxGradNorm(graph);
    for (const node of graph.nodes) {
      const el = this.nodeEls.get(node.id);
      if (el) decorate(el, node, labels.get(node.id) ?? nodeLabel(node), roots.has(node.id), maxNorm);
    }
  }

  /** The inspector found NaN / Inf values that the graph's summaries did not show: mark the node. */
  flagNonFinite(id: string, count: number): void {
    const el = this.nodeEls.get(id);
    if (!el || el.classList.contains("gs-nonfinite")) return;
    el.classList.add("gs-nonfinite");
    el.setAttribute("data-nonfinite", "true");
    el.setAttribute("aria-label", `${el.getAttribute("aria-label") ?? ""}, ${nonFiniteText(count)}`);
  }

  /** Remove the drawing (no graph to show). */
  clear(): void {
    this.nodeEls = new Map();
    this.edgeEls = new Map();
    this.neighbours = null;
    this.tabStop = null;
    this.edgeLayer.replaceChildren();
    this.nodeLayer.replaceChildren();
  }

  /** Highlight `id` (null: nothing) and emphasize its edges; unknown ids highlight nothing. */
  setSelected(id: string | null): void {
    if (this.selected !== null) this.mark(this.selected, false);
    this.selected = id;
    if (id !== null) this.mark(id, true);
    // The Tab stop follows the selection, unless the keyboard is on another node (a selection made
    // from Python or the outline): focus and Tab stop stay together.
    const active = document.activeElement;
    const elsewhere = active !== null && this.nodeLayer.contains(active) && this.nodeIdOf(active) !== id;
    if (this.has(id) && !elsewhere) this.setTabStop(id);
  }

  /** Mark the nodes a re-run added (the diff view's `added`); an empty set clears the marks. */
  setAdded(ids: ReadonlySet<string>): void {
    for (const [id, el] of this.nodeEls) {
      const on = ids.has(id);
      if (el.classList.contains("gs-added") === on) continue;
      el.classList.toggle("gs-added", on);
      if (on) el.setAttribute("data-added", "true");
      else el.removeAttribute("data-added");
    }
  }

  /** Move the graph's one Tab stop to `id`. */
  private setTabStop(id: string | null): void {
    if (id === this.tabStop) return;
    if (this.tabStop !== null) this.nodeEls.get(this.tabStop)?.setAttribute("tabindex", "-1");
    this.tabStop = id;
    if (id !== null) this.nodeEls.get(id)?.setAttribute("tabindex", "0");
  }

  private has(id: string | null): id is string {
    return id !== null && this.nodeEls.has(id);
  }

  nodeElement(id: string): SVGGElement | undefined {
    return this.nodeEls.get(id);
  }

  destroy(): void {
    this.nodeLayer.removeEventListener("click", this.onClick);
    this.nodeLayer.removeEventListener("keydown", this.onKey);
    this.nodeLayer.removeEventListener("mouseover", this.onOver);
    this.nodeLayer.removeEventListener("mouseout", this.onOut);
    this.svg.remove();
  }

  private mark(id: string, on: boolean): void {
    const el = this.nodeEls.get(id);
    el?.classList.toggle("gs-selected", on);
    el?.setAttribute("aria-current", on ? "true" : "false");
    for (const path of this.edgeEls.get(id) ?? []) {
      path.classList.toggle("gs-edge-selected", on);
      path.setAttribute("marker-end", `url(#${this.markerId}${on ? "-sel" : ""})`);
      // Later siblings paint on top: emphasized edges should not hide under the others.
      if (on) this.edgeLayer.append(path);
    }
  }

  private hover(id: string | null, on: boolean): void {
    if (id === null) return;
    this.state.hovered = on ? id : null;
    for (const path of this.edgeEls.get(id) ?? []) path.classList.toggle("gs-edge-hover", on);
  }

  private indexEdge(id: string, path: SVGPathElement): void {
    const list = this.edgeEls.get(id);
    if (list) list.push(path);
    else this.edgeEls.set(id, [path]);
  }

  private nodeIdOf(target: EventTarget | null): string | null {
    const el = target instanceof Element ? target.closest("[data-node-id]") : null;
    return el?.getAttribute("data-node-id") ?? null;
  }

  private handleClick(e: MouseEvent): void {
    const id = this.nodeIdOf(e.target);
    if (id !== null && !e.defaultPrevented) this.events.select(id);
  }

  private handleKey(e: KeyboardEvent): void {
    const id = this.nodeIdOf(e.target);
    if (id === null || !plainKey(e)) return; // Shift+Enter, Ctrl+S, … are the notebook's
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      this.events.select(id);
      return;
    }
    const step = keyToStep(e.key, this.direction);
    const to = step && this.neighbours ? this.neighbours.step(id, step) : null;
    const el = to === null ? undefined : this.nodeEls.get(to);
    if (!el || to === null) return;
    e.preventDefault();
    this.setTabStop(to);
    el.focus();
    this.events.focus(to);
  }
}

function arrow(id: string, cls: string): SVGMarkerElement {
  return s(
    "marker",
    // userSpaceOnUse: the arrow keeps its size when a selected edge is drawn thicker.
    {
      id,
      class: cls,
      viewBox: "0 0 10 10",
      refX: 9,
      refY: 5,
      markerWidth: 8,
      markerHeight: 8,
      markerUnits: "userSpaceOnUse",
      orient: "auto",
    },
    s("path", { d: "M0,0 L10,5 L0,10 z" }),
  );
}

/** A smooth path through the points: each segment is an S-curve that leaves and enters along the rank axis. */
export function edgePath(points: readonly Point[], direction: Direction): string {
  const first = points[0];
  if (!first) return "";
  const vertical = direction === "TB" || direction === "BT";
  let d = `M${round(first.x)},${round(first.y)}`;
  for (let i = 1; i < points.length; i++) {
    const a = points[i - 1] as Point;
    const b = points[i] as Point;
    if (vertical) {
      const my = round((a.y + b.y) / 2);
      d += `C${round(a.x)},${my} ${round(b.x)},${my} ${round(b.x)},${round(b.y)}`;
    } else {
      const mx = round((a.x + b.x) / 2);
      d += `C${mx},${round(a.y)} ${mx},${round(b.y)} ${round(b.x)},${round(b.y)}`;
    }
  }
  return d;
}

function round(v: number): number {
  return Math.round(v * 10) / 10;
}
