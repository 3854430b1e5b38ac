// One rendered gradsight view: builds the `.gradsight` root, wires the synced traits (model.ts) to
// the toolbar, run banner, what-if parts (whatif.ts: toggles, re-run, history, diff, missing
// gradients), renderer, pan/zoom and inspector (whose requests to Python go through
// inspect-session.ts), and undoes all of it in destroy(). Every model handler is guarded: a bad
// graph or a bug shows in the error banner instead of breaking the notebook. A new graph with the
// same structure (live mode, after each training step) restyles the drawn nodes instead of laying
// them out again, and never moves a view the user has panned or zoomed. Big graphs (past
// GROUP_THRESHOLD nodes, and binary skeletons) go to big-view.ts instead of the SVG renderer:
// grouped by module, laid out in a Worker, drawn on a canvas. After the first complete paint of
// each graph the root gets data-painted="<n>" (frames.ts: the benchmark hooks).

import { BigView, wantsBigView } from "./big-view";
import { Connection, LOST_TEXT } from "./connection";
import { h, setText } from "./dom";
import { installHooks, markPainted } from "./frames";
import { RequestClient } from "./inspect-client";
import { InspectSession } from "./inspect-session";
import { Inspector } from "./inspector";
import { guardKeys } from "./keys";
import { computeLayout, type Direction, dummyBudget, type Layout, type PlacedNode } from "./layout";
import {
  type Model,
  readDirection,
  readError,
  readGraphTrait,
  readSelected,
  readStatus,
  writeDirection,
  writeSelected,
} from "./model";
import { watchNarrow } from "./narrow";
import { layoutInput, type NodeLabel, nodeLabel, structureKey } from "./node-label";
import { type Box, PanZoom } from "./panzoom";
import { GraphRenderer } from "./render";
import { RunBanner } from "./run-banner";
import { initialViewState } from "./state";
import { Banners, Toolbar } from "./toolbar";
import { ViewErrors } from "./view-errors";
import { WhatIf } from "./whatif";
import { parseGraph, type WireGraph } from "./wire";

export class GradsightView {
  readonly root: HTMLElement;
  private readonly state = initialViewState();
  private readonly toolbar: Toolbar;
  private readonly banners = new Banners();
  private readonly renderer: GraphRenderer;
  private readonly panzoom: PanZoom;
  private readonly inspector: Inspector;
  private readonly session: InspectSession;
  private readonly client: RequestClient;
  private readonly run = new RunBanner();
  private readonly whatif: WhatIf;
  private readonly empty: HTMLElement;
  private graph: WireGraph | null = null;
  private readonly errors = new ViewErrors(() => this.onErrors());
  private layout: Layout | null = null;
  private placed = new Map<string, PlacedNode>();
  private roots: readonly string[] = [];
  /** Structure of the drawn graph (ids, edges, labels, direction): equal means restyle, not relayout. */
  private structure = "";
  private readonly handlers: [string, () => void][];
  /** Undo watchNarrow and guardKeys. */
  private readonly stops: (() => void)[];
  private readonly connection: Connection;
  private readonly graphEl: HTMLElement;
  /** The big-graph view, created for the first big graph. */
  private big: BigView | null = null;
  private bigMode = false;
  /** Graphs received so far, and the last one painted (data-painted). */
  private graphCount = 0;
  private paintedCount = 0;
  /** Set while the view writes `selected` itself (a click), unset for Python's selections. */
  private selfSelect = false;

  constructor(
    private readonly model: Model,
    host: HTMLElement,
  ) {
    const select = (id: string): void => this.guard(() => this.select(id));
    this.connection = new Connection(model, host, () => this.guard(() => this.onConnection()));
    this.client = new RequestClient(model, undefined, this.connection);
    this.whatif = new WhatIf(model, this.client, { select, guard: (fn) => this.guard(fn) });
    this.toolbar = new Toolbar(
      {
        fit: () => this.guard(() => this.fit()),
        zoom: (factor) => this.zoom(factor),
        direction: (d) => this.guard(() => this.setDirection(d)),
      },
      { history: this.whatif.history.el, elapsed: this.whatif.clock.el },
    );
    installHooks();
    this.renderer = new GraphRenderer({ select, focus: (id) => this.reveal(id) }, this.state);
    this.panzoom = new PanZoom(this.renderer.svg, this.renderer.viewport, this.state);
    this.inspector = new Inspector({
      select,
      values: (key, index) => this.guard(() => this.session.values(key, index)),
      toggle: (t, checked) => this.guard(() => this.whatif.toggle(t, checked)),
      whatIf: () => this.whatif.state(),
    });
    this.session = new InspectSession(this.client, this.inspector, {
      nonFinite: (id, count) => (this.bigMode ? this.big?.flagNonFinite(id) : this.renderer.flagNonFinite(id, count)),
      guard: (fn) => this.guard(fn),
    });
    this.empty = h("div", { class: "gs-empty", hidden: true });
    this.graphEl = h("div", { class: "gs-graph", "data-gradsight": "graph" }, this.renderer.svg, this.empty);
    this.root = h(
      "div",
      { class: "gradsight" },
      this.toolbar.el,
      this.banners.error,
      this.banners.message,
      this.banners.notes,
      this.run.el,
      this.whatif.panel.el,
      this.whatif.diffView.el,
      this.whatif.missing.el,
      h("div", { class: "gs-body" }, this.graphEl, this.inspector.el),
    );
    host.append(this.root);
    this.stops = [watchNarrow(this.root), guardKeys(this.root)];
    this.handlers = [
      ["change:graph", () => this.guard(() => this.onGraph())],
      ["change:selected", () => this.guard(() => this.onSelected())],
      ["change:status", () => this.guard(() => this.onStatus())],
      ["change:error", () => this.guard(() => this.onErrors())],
      ["change:options", () => this.guard(() => this.onOptions())],
      ["change:pending", () => this.errors.guardTrait("pending", () => this.onPending())],
      ["change:history", () => this.errors.guardTrait("history", () => this.whatif.onHistory())],
      ["change:current", () => this.guard(() => this.whatif.onRunIndex())],
      ["change:baseline", () => this.guard(() => this.whatif.onRunIndex())],
      ["change:diff", () => this.errors.guardTrait("diff", () => this.onDiff())],
    ];
    for (const [event, fn] of this.handlers) model.on(event, fn);
    // Separately guarded: a malformed what-if trait must not keep the graph from showing.
    this.errors.guardTrait("pending", () => this.whatif.onPending());
    this.errors.guardTrait("history", () => this.whatif.onHistory());
    this.errors.guardTrait("diff", () => this.whatif.onDiff());
    this.guard(() => {
      this.onStatus();
      this.onGraph();
      if (this.connection.lost) this.onConnection();
    });
  }

  destroy(): void {
    for (const [event, fn] of this.handlers) this.model.off(event, fn);
    for (const stop of this.stops) stop();
    this.connection.destroy();
    this.session.destroy();
    this.whatif.destroy();
    this.client.destroy();
    this.toolbar.destroy();
    this.renderer.destroy();
    this.panzoom.destroy();
    this.big?.destroy();
    this.inspector.destroy();
    this.root.remove();
  }

  private guard(fn: () => void): void {
    this.errors.guard(fn);
  }

  private onGraph(): void {
    const raw = readGraphTrait(this.model);
    this.graph = null;
    this.errors.view = "";
    try {
      // Before Python's first graph arrives the trait may be unset or an empty dict: not an error.
      if (raw !== null) this.graph = parseGraph(raw);
      if (this.graph) this.graphCount++;
    } catch (e) {
      this.errors.view = `Cannot show this graph: ${e instanceof Error ? e.message : String(e)}`;
    }
    this.onErrors();
    this.banners.setMessage(this.graph?.message ?? null);
    this.banners.setNotes(this.graph?.notes ?? []);
    this.toolbar.setCount(this.graph ? this.graph.nodes.length : null);
    this.toolbar.setDirection(readDirection(this.model));
    this.run.set(this.graph?.run ?? null);
    this.whatif.setGraph(this.graph);
    this.relayout(true);
    this.setAdded();
    this.onSelected(true);
  }

  private setAdded(): void {
    if (this.bigMode) this.big?.setAdded(this.whatif.added());
    else this.renderer.setAdded(this.whatif.added());
  }

  /**
   * Lay out and draw the graph. `update`: a new graph from Python, which may be the same structure
   * with new values (restyled in place), and keeps the user's pan/zoom when it shares a root with
   * the graph before; otherwise (a new direction) always lay out and fit.
   */
  private relayout(update = false): void {
    const graph = this.graph;
    const before = this.layout;
    const oldRoots = new Set(this.placed.size > 0 ? this.roots : []);
    this.showEmpty(graph);
    if (graph && wantsBigView(graph)) {
      this.showBig(graph);
      return;
    }
    this.leaveBig();
    if (!graph || graph.nodes.length === 0) {
      this.layout = null;
      this.placed = new Map();
      this.structure = "";
      this.renderer.clear();
      if (graph) this.paintedSoon();
      return;
    }
    const labels = new Map<string, NodeLabel>(graph.nodes.map((n) => [n.id, nodeLabel(n)]));
    const direction = readDirection(this.model);
    const structure = structureKey(graph, labels, direction);
    if (update && before && structure === this.structure) {
      this.renderer.restyle(graph, labels);
      this.roots = graph.roots;
      this.paintedSoon();
      return;
    }
    const layout = computeLayout(layoutInput(graph, labels), {
      direction,
      maxDummies: dummyBudget(graph.nodes.length),
    });
    this.layout = layout;
    this.structure = structure;
    this.roots = graph.roots;
    this.placed = new Map(layout.nodes.map((p) => [p.id, p]));
    this.renderer.draw(graph, layout, labels);
    this.paintedSoon();
    const keepView = update && this.state.userMoved && graph.roots.some((r) => oldRoots.has(r));
    if (keepView) return;
    const root = graph.roots[0];
    this.panzoom.autoFit(bounds(layout), root === undefined ? null : this.box(root));
  }

  /** A big graph: the SVG is emptied and the big view (created on first use) takes over. */
  private showBig(graph: WireGraph): void {
    this.layout = null;
    this.placed = new Map();
    this.structure = "";
    this.roots = graph.roots;
    this.renderer.clear();
    this.bigMode = true;
    this.root.classList.add("gs-big-mode");
    if (!this.big) {
      this.big = new BigView({
        select: (id) => this.guard(() => this.select(id)),
        painted: () => this.painted(),
        error: (message) => {
          this.errors.view = `Cannot show this graph: ${message}`;
          this.onErrors();
        },
      });
      this.graphEl.append(this.big.el);
    }
    this.big.setGraph(graph, readDirection(this.model));
  }

  private leaveBig(): void {
    if (!this.bigMode) return;
    this.bigMode = false;
    this.root.classList.remove("gs-big-mode");
    this.big?.clear();
  }

  /**
   * The SVG is built: style and layout it now (the browser would at the next frame anyway) and
   * count that as painted. No frame callback, so nothing is left pending for cleanup to cancel.
   */
  private paintedSoon(): void {
    if (this.root.isConnected) this.renderer.svg.getBoundingClientRect();
    this.painted();
  }

  /** The first complete paint of the current graph: data-painted and a performance mark (once). */
  private painted(): void {
    if (this.paintedCount === this.graphCount || this.graph === null) return;
    this.paintedCount = this.graphCount;
    markPainted(this.root, this.graphCount, this.graph.nodes.length);
  }

  private showEmpty(graph: WireGraph | null): void {
    const text =
      graph === null ? (this.errors.view ? "" : "No graph yet.") : graph.nodes.length === 0 ? "Empty graph." : "";
    setText(this.empty, text);
    this.empty.hidden = text === "";
  }

  /** Reflect `selected`; `force` after a new graph, since the same id may now be a different node. */
  private onSelected(force = false): void {
    const id = readSelected(this.model);
    const known = id !== null && (this.bigMode ? (this.big?.has(id) ?? false) : this.placed.has(id));
    if (!force && this.inspector.node === id && known && !this.inspector.failed()) return;
    if (this.bigMode) this.big?.setSelected(known ? id : null);
    else this.renderer.setSelected(known ? id : null);
    this.inspector.show(this.graph, id);
    this.session.inspect(known ? id : null);
    if (!known || force) return;
    // Python's selection opens the node's groups and centres it; a click only keeps it in view.
    if (this.bigMode) this.big?.reveal(id, !this.selfSelect);
    else this.reveal(id);
  }

  private onPending(): void {
    try {
      this.whatif.onPending();
    } finally {
      this.inspector.syncToggles(this.whatif.state());
    }
  }

  private onDiff(): void {
    try {
      this.whatif.onDiff();
    } finally {
      this.setAdded();
    }
  }

  /** Python went out of reach (or came back): status, error banner, the what-if controls. */
  private onConnection(): void {
    this.root.toggleAttribute("data-lost", this.connection.lost);
    this.whatif.setLost(this.connection.lost);
    this.inspector.syncToggles(this.whatif.state());
    this.onStatus();
    this.onErrors();
  }

  private onStatus(): void {
    const status = this.connection.lost ? "error" : readStatus(this.model);
    this.toolbar.setStatus(status);
    this.whatif.onStatus(status);
    this.root.setAttribute("data-status", status);
    this.root.classList.toggle("gs-running", status === "running");
  }

  private onErrors(): void {
    const lost = this.connection.lost ? LOST_TEXT : "";
    this.banners.setErrors(lost || readError(this.model), this.errors.text());
  }

  private onOptions(): void {
    const direction = readDirection(this.model);
    this.toolbar.setDirection(direction);
    if (this.bigMode) this.big?.setDirection(direction);
    else if (this.layout && this.layout.direction !== direction) this.relayout();
  }

  private select(id: string): void {
    this.selfSelect = true;
    try {
      writeSelected(this.model, id);
      // A real model fires change:selected on set(); this covers one that does not (idempotent).
      this.onSelected();
    } finally {
      this.selfSelect = false;
    }
  }

  private setDirection(direction: Direction): void {
    writeDirection(this.model, direction);
    this.onOptions();
  }

  private fit(): void {
    if (this.bigMode) this.big?.fit();
    else if (this.layout) this.panzoom.fit(bounds(this.layout));
  }

  private zoom(factor: number): void {
    if (this.bigMode) this.big?.zoomBy(factor);
    else this.panzoom.zoomBy(factor);
  }

  private reveal(id: string): void {
    const box = this.box(id);
    if (box) this.panzoom.ensureVisible(box);
  }

  private box(id: string): Box | null {
    const p = this.placed.get(id);
    return p ? { x: p.cx - p.width / 2, y: p.cy - p.height / 2, width: p.width, height: p.height } : null;
  }
}

function bounds(layout: Layout): Box {
  return { x: 0, y: 0, width: layout.width, height: layout.height };
}
