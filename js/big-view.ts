// The view of big graphs (past GROUP_THRESHOLD nodes, and every binary skeleton): collapsed into
// module groups (groups.ts), laid out level by level for what is visible only, in a Worker
// (scene-builder.ts), drawn on a canvas (canvas-view.ts) with an outline and a
// search list carrying the DOM contract (outline.ts, search-box.ts), and a minimap. Expanding a
// group keeps it where it was on screen; cached level layouts make collapse exact. view.ts owns
// the selection (the `selected` trait) and the inspector; this module only reports clicks.

import { BigControls } from "./big-controls";
import { describeTarget, type NavContext, SceneNav, targetBox } from "./big-nav";
import { type Anchor, anchoredTransform, anchorOf, nodeTarget } from "./big-place";
import { CanvasView } from "./canvas-view";
import { h } from "./dom";
import { Expansion } from "./expansion";
import { type GraphIndex, indexGraph, pathToRoots } from "./graph-index";
import { buildGroups, type GroupTree, ROOT_GROUP } from "./groups";
import type { Direction } from "./layout";
import { Minimap } from "./minimap";
import { Outline } from "./outline";
import { ThemePalette, watchTheme } from "./palette";
import { PanZoom } from "./panzoom";
import { type Scene, T_GROUP, T_HEADER, T_LEAF, T_NODE } from "./scene";
import { SceneBuilder } from "./scene-builder";
import { SearchBox } from "./search-box";
import { initialViewState } from "./state";
import { computeVisible, groupsToShow, itemsOnPath, type Visible } from "./visible";
import type { WireGraph } from "./wire";

/** JSON graphs with more nodes than this open grouped by module on the canvas. */
export const GROUP_THRESHOLD = 2000;

export function wantsBigView(graph: WireGraph): boolean {
  return (graph.skeleton ?? null) !== null || graph.nodes.length > GROUP_THRESHOLD;
}

export interface BigViewEvents {
  /** The user chose node `id` (canvas click, outline, search hit). */
  select(id: string): void;
  /** The first complete paint of the graph given to setGraph. */
  painted(): void;
  /** A layout failed. */
  error(message: string): void;
}

export class BigView {
  readonly el: HTMLElement;
  private readonly canvas: CanvasView;
  private readonly panzoom: PanZoom;
  private readonly state = initialViewState();
  private readonly outline: Outline;
  private readonly search: SearchBox;
  private readonly minimap: Minimap;
  private readonly controls: BigControls;
  private readonly builder: SceneBuilder;
  private ix: GraphIndex | null = null;
  private tree: GroupTree | null = null;
  private roots: readonly string[] = [];
  private readonly expanded = new Expansion();
  private flat = false;
  private foldLeaves = true;
  private direction: Direction = "TB";
  private visible: Visible | null = null;
  /** The visible graph of the newest layout (ahead of `visible` while a Worker is busy). */
  private latest: Visible | null = null;
  private scene: Scene | null = null;
  private nav: SceneNav | null = null;
  /** Read at each frame: the element is often detached when setGraph runs (see palette.ts). */
  private readonly theme: ThemePalette;
  private selected = -1;
  private pending: { node: number; centre: boolean } | null = null;
  private fitNext = true;
  private awaitingPaint = false;
  private readonly stopTheme: () => void;

  constructor(private readonly events: BigViewEvents) {
    this.canvas = new CanvasView({
      activate: (id) => this.activate(id),
      step: (id, step) => this.nav?.step(id, step) ?? -1,
      firstCursor: () => this.firstCursor(),
      cursorMoved: (id) => {
        if (this.scene) this.panzoom.ensureVisible(targetBox(this.scene, id));
      },
      describe: (id) => {
        const c = this.context();
        return c ? describeTarget(c, id) : "";
      },
      palette: () => this.theme.get(),
      drawn: () => this.onDrawn(),
    });
    this.panzoom = new PanZoom(this.canvas.el, (t) => this.canvas.setTransform(t), this.state);
    this.outline = new Outline({ toggle: (g) => this.toggle(g), pick: (i) => this.pick(i) });
    this.search = new SearchBox({ pick: (i) => this.pick(i) });
    this.minimap = new Minimap({
      moveTo: (x, y) => this.panzoom.centre({ x, y, width: 0, height: 0 }, 0),
      palette: () => this.theme.get(),
    });
    this.controls = new BigControls({
      flat: () => this.setFlat(!this.flat),
      leaves: () => this.setFoldLeaves(!this.foldLeaves),
      collapseAll: () => this.collapseAll(),
    });
    this.el = h("div", { class: "gs-big", "data-gradsight": "big", hidden: true });
    this.theme = new ThemePalette(this.el);
    this.builder = new SceneBuilder(this.el);
    this.el.append(
      h("div", { class: "gs-side" }, this.controls.el, this.search.el, this.outline.el),
      h("div", { class: "gs-canvas-wrap" }, this.canvas.el, this.minimap.el, this.builder.progress),
    );
    this.stopTheme = watchTheme(() => this.onTheme());
  }

  /** Show `graph`; expansion, flat / leaves choices and (for the same roots) the view are kept. */
  setGraph(graph: WireGraph, direction: Direction): void {
    const ix = indexGraph(graph);
    const tree = buildGroups(ix);
    const sameRoots = this.ix !== null && graph.roots.some((r) => this.roots.includes(r));
    this.fitNext = !(sameRoots && this.state.userMoved) || this.direction !== direction;
    if (!sameRoots) this.expanded.reset(tree);
    this.ix = ix;
    this.tree = tree;
    this.roots = graph.roots;
    // Node indices of the old graph mean nothing now; view.ts selects again right after.
    this.selected = -1;
    this.canvas.marks.selected = -1;
    this.pending = null;
    this.direction = direction;
    this.el.hidden = false;
    let max = 0;
    for (const v of ix.gradNorm) if (Number.isFinite(v) && v > max) max = v;
    this.canvas.marks.maxNorm = max;
    this.canvas.marks.nonfinite = new Set();
    this.search.setIndex(ix);
    this.awaitingPaint = true;
    this.relayout(null);
  }

  /** No big graph to show (none, or a small one drawn as SVG). */
  clear(): void {
    this.builder.cancel();
    this.ix = null;
    this.tree = null;
    this.visible = null;
    this.latest = null;
    this.scene = null;
    this.nav = null;
    this.roots = [];
    this.canvas.input = null;
    this.search.setIndex(null);
    this.outline.render(null, null, new Set(), -1);
    this.minimap.setScene(null);
    this.el.hidden = true;
  }

  has(id: string): boolean {
    return this.ix?.indexOf.has(id) ?? false;
  }

  /** Mark node `id` as selected (null: nothing), with the path from the roots to it. */
  setSelected(id: string | null): void {
    this.selected = id === null ? -1 : (this.ix?.indexOf.get(id) ?? -1);
    this.canvas.marks.selected = this.selected;
    this.updatePath();
    this.outline.setSelected(this.selected);
    this.canvas.requestDraw();
  }

  /** Open the groups holding node `id`; then centre it (`centre`) or just bring it on screen. */
  reveal(id: string, centre: boolean): void {
    const i = this.ix?.indexOf.get(id);
    const visible = this.latest;
    if (i === undefined || !this.tree || !visible) return;
    // Centring wins over keeping in view (a search hit asks for both, one after the other).
    this.pending = { node: i, centre: centre || (this.pending?.node === i && this.pending.centre) };
    if (!this.flat && this.expanded.open(this.tree, groupsToShow(this.tree, visible, i))) this.relayout(null);
    // While a Worker lays out, the scene on screen is stale: the new one applies the pending move.
    else if (!this.builder.running) this.applyPending();
  }

  fit(): void {
    if (this.scene) this.panzoom.fit({ x: 0, y: 0, width: this.scene.width, height: this.scene.height });
  }

  zoomBy(factor: number): void {
    this.panzoom.zoomBy(factor);
  }

  setDirection(direction: Direction): void {
    if (direction === this.direction || !this.ix) return;
    this.direction = direction;
    this.fitNext = true;
    this.relayout(null);
  }

  /** Nodes a re-run added (marked like the SVG view's gs-added). */
  setAdded(ids: ReadonlySet<string>): void {
    const added = new Set<number>();
    for (const id of ids) {
      const i = this.ix?.indexOf.get(id);
      if (i !== undefined) added.add(i);
    }
    this.canvas.marks.added = added;
    this.canvas.requestDraw();
  }

  /** The inspector found NaN / Inf values in node `id`. */
  flagNonFinite(id: string): void {
    const i = this.ix?.indexOf.get(id);
    if (i === undefined) return;
    this.canvas.marks.nonfinite = new Set([...this.canvas.marks.nonfinite, i]);
    this.canvas.requestDraw();
  }

  destroy(): void {
    this.stopTheme();
    this.builder.destroy();
    this.panzoom.destroy();
    this.canvas.destroy();
    this.minimap.destroy();
    this.outline.destroy();
    this.search.destroy();
    this.controls.destroy();
    this.el.remove();
  }

  // -- expansion and layout ------------------------------------------------------------------

  private toggle(g: number): void {
    const tree = this.tree;
    if (!tree || g === ROOT_GROUP) return;
    const anchor = anchorOf(this.visible, this.scene, this.state.transform, g);
    this.expanded.toggle(tree, g);
    if (this.flat) this.renderOutline();
    else this.relayout(anchor);
  }

  private setFlat(flat: boolean): void {
    this.flat = flat;
    this.fitNext = true;
    this.relayout(null);
  }

  private setFoldLeaves(fold: boolean): void {
    this.foldLeaves = fold;
    this.fitNext = true;
    this.relayout(null);
  }

  private collapseAll(): void {
    this.expanded.clear();
    this.fitNext = true;
    this.relayout(null);
  }

  private renderOutline(): void {
    if (this.tree) this.outline.render(this.ix, this.tree, this.expanded.of(this.tree), this.selected);
  }

  private relayout(anchor: Anchor | null): void {
    const ix = this.ix;
    const tree = this.tree;
    if (!ix || !tree) return;
    const expanded = this.expanded.of(tree);
    const flat = this.flat;
    const visible = computeVisible(ix, tree, { flat, foldLeaves: this.foldLeaves, expanded });
    this.latest = visible;
    this.controls.set({ flat, foldLeaves: this.foldLeaves, shown: visible.items.length, total: ix.count });
    this.outline.render(ix, tree, expanded, this.selected);
    this.builder.build(
      { ix, tree, visible, flat, direction: this.direction },
      { ready: (scene) => this.show(visible, scene, anchor), error: (message) => this.events.error(message) },
    );
  }

  /** A new scene: draw it, and place the view (fit, keep the anchor, or go to a pending node). */
  private show(visible: Visible, scene: Scene, anchor: Anchor | null): void {
    const ix = this.ix;
    const tree = this.tree;
    if (!ix || !tree) return;
    this.visible = visible;
    this.scene = scene;
    this.nav = new SceneNav({ ix, tree, visible, scene });
    this.canvas.input = { ix, tree, visible, scene, flat: this.flat };
    this.canvas.marks.hover = -1;
    // The keyboard cursor stays on the group it just opened or closed.
    const anchored = anchor ? (visible.groupItem[anchor.group] as number) : -1;
    this.canvas.marks.cursor = anchored >= 0 ? (scene.itemTarget[anchored] as number) : -1;
    this.updatePath();
    this.minimap.setScene(scene);
    if (this.fitNext) {
      this.fitNext = false;
      const root = ix.roots[0];
      const rootTarget = root === undefined ? -1 : this.nodeTarget(root);
      this.panzoom.autoFit(
        { x: 0, y: 0, width: scene.width, height: scene.height },
        rootTarget < 0 ? null : targetBox(scene, rootTarget),
      );
    } else if (anchor) this.keepAnchor(anchor);
    this.applyPending();
    this.canvas.requestDraw();
  }

  /** Keep a group where it was on screen before the layout changed. */
  private keepAnchor(anchor: Anchor): void {
    const t = anchoredTransform(this.visible, this.scene, this.state.transform, anchor);
    if (t) this.panzoom.apply(t);
  }

  private nodeTarget(i: number): number {
    return nodeTarget(this.scene, this.visible, i);
  }

  private applyPending(): void {
    const pending = this.pending;
    const scene = this.scene;
    if (!pending || !scene) return;
    this.pending = null;
    const target = this.nodeTarget(pending.node);
    if (target < 0) return;
    const box = targetBox(scene, target);
    if (pending.centre) this.panzoom.centre(box);
    else this.panzoom.ensureVisible(box);
    this.canvas.setCursor(target);
  }

  private updatePath(): void {
    const ix = this.ix;
    const visible = this.visible;
    if (!ix || !visible || this.selected < 0) {
      this.canvas.marks.pathItems = null;
      return;
    }
    this.canvas.marks.pathItems = itemsOnPath(visible, pathToRoots(ix, this.selected));
  }

  // -- canvas events ---------------------------------------------------------------------------

  private context(): NavContext | null {
    const { ix, tree, visible, scene } = this;
    return ix && tree && visible && scene ? { ix, tree, visible, scene } : null;
  }

  private activate(target: number): void {
    const scene = this.scene;
    const visible = this.visible;
    const ix = this.ix;
    if (!scene || !visible || !ix) return;
    const kind = scene.kind[target];
    const ref = scene.ref[target] as number;
    if (kind === T_LEAF) this.events.select(ix.ids[ref] as string);
    else if (kind === T_NODE) this.events.select(ix.ids[(visible.items[ref] as { ref: number }).ref] as string);
    else if (kind === T_GROUP || kind === T_HEADER) this.toggle((visible.items[ref] as { ref: number }).ref);
  }

  /** A search hit or an outline entry: select the node, open its groups, centre it. */
  private pick(i: number): void {
    const id = this.ix?.ids[i];
    if (id === undefined) return;
    this.events.select(id);
    this.reveal(id, true);
  }

  private firstCursor(): number {
    if (this.selected >= 0) {
      const t = this.nodeTarget(this.selected);
      if (t >= 0) return t;
    }
    const root = this.ix?.roots[0];
    return root === undefined ? -1 : this.nodeTarget(root);
  }

  private onDrawn(): void {
    const { width, height } = this.canvas.size();
    this.minimap.setView(this.state.transform, width, height);
    if (this.awaitingPaint && this.scene && !this.builder.running) {
      this.awaitingPaint = false;
      this.events.painted();
    }
  }

  /** The next frame reads the palette again; the minimap follows it (see Minimap.draw). */
  private onTheme(): void {
    this.theme.forget();
    this.canvas.requestDraw();
  }
}
