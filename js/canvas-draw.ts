// One frame of the big-graph canvas: frames of expanded groups, edges, group boxes, node boxes,
// folded leaves, labels and marks (selection, the path from the roots, hover, keyboard cursor),
// drawn only for what the viewport shows (the scene's grid), batched by style (one path per
// style, not one per node) and simplified by level of detail (lod.ts). Layout units are scaled by
// zoom × devicePixelRatio, so text is crisp at any readable zoom. Labels and marks: canvas-text.ts.

import { FRAME_HEADER, frameTitle } from "./big-label";
import { drawLabels, drawMarks, drawTitles, pathHas, targetNode, text } from "./canvas-text";
import { executed, type GraphIndex, isNonFinite, KIND_LEAF, KIND_OPAQUE, KIND_ROOT } from "./graph-index";
import type { Group, GroupTree } from "./groups";
import { type Lod, lodFor, titleFits } from "./lod";
import { gradWeight } from "./node-draw";
import type { Palette } from "./palette";
import { type Scene, T_GROUP, T_LEAF, T_NODE } from "./scene";
import type { Transform } from "./state";
import type { Item, Visible } from "./visible";

export interface Marks {
  /** Selected node index, -1: none. */
  selected: number;
  /** Target under the pointer / under the keyboard cursor, -1: none. */
  hover: number;
  cursor: number;
  /** Items on a path from a root to the selection (null: nothing selected). */
  pathItems: Uint8Array | null;
  /** Nodes a re-run added (the diff), and nodes the inspector found NaN / Inf in. */
  added: ReadonlySet<number>;
  nonfinite: ReadonlySet<number>;
  maxNorm: number;
}

export interface DrawInput {
  ix: GraphIndex;
  tree: GroupTree;
  visible: Visible;
  scene: Scene;
  /** Whether labels include the module (the flat view). */
  flat: boolean;
  t: Transform;
  /** CSS pixels. */
  width: number;
  height: number;
  dpr: number;
  palette: Palette;
  marks: Marks;
}

export interface DrawStats {
  targets: number;
  edges: number;
  lod: Lod;
}

interface Style {
  fill: string;
  stroke: string;
  line: number;
  dash: number[];
  alpha: number;
}

export function drawFrame(ctx: CanvasRenderingContext2D, d: DrawInput): DrawStats {
  const { t, dpr, scene } = d;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, d.width * dpr, d.height * dpr);
  ctx.setTransform(dpr * t.k, 0, 0, dpr * t.k, dpr * t.x, dpr * t.y);
  const view = { x0: -t.x / t.k, y0: -t.y / t.k, x1: (d.width - t.x) / t.k, y1: (d.height - t.y) / t.k };
  const px = 1 / t.k;
  drawFrames(ctx, d, view, px);
  const targets: number[] = [];
  scene.grid.query(view.x0, view.y0, view.x1, view.y1, (id) => {
    targets.push(id);
  });
  const edges = scene.edges.filter((e) => e.x1 >= view.x0 && e.x0 <= view.x1 && e.y1 >= view.y0 && e.y0 <= view.y1);
  const lod = lodFor(t.k, edges.length);
  drawEdges(ctx, d, edges, lod, px);
  drawBoxes(ctx, d, targets, lod, px);
  if (lod.names) drawLabels(ctx, d, targets, lod);
  else drawTitles(ctx, d, targets);
  drawMarks(ctx, d, lod, px);
  return { targets: targets.length, edges: edges.length, lod };
}

type View = { x0: number; y0: number; x1: number; y1: number };

function drawFrames(ctx: CanvasRenderingContext2D, d: DrawInput, v: View, px: number): void {
  const { scene, palette } = d;
  for (const f of scene.frames) {
    const x = scene.x[f] as number;
    const y = scene.y[f] as number;
    const w = scene.w[f] as number;
    const h = scene.h[f] as number;
    if (x > v.x1 || y > v.y1 || x + w < v.x0 || y + h < v.y0) continue;
    ctx.globalAlpha = 0.55;
    ctx.fillStyle = palette.bg2;
    ctx.fillRect(x, y, w, h);
    ctx.globalAlpha = 1;
    ctx.fillStyle = palette.border2;
    ctx.fillRect(x, y, w, FRAME_HEADER);
    ctx.strokeStyle = pathHas(d, f) ? palette.brand : palette.border;
    ctx.lineWidth = px;
    ctx.strokeRect(x, y, w, h);
    const group = d.tree.groups[(d.visible.items[f] as Item).ref] as Group;
    if (d.t.k * FRAME_HEADER >= 9) {
      text(ctx, frameTitle(group), x + 8, y + FRAME_HEADER / 2, `600 11px ${palette.font}`, palette.fg, w - 16, "left");
    } else if (titleFits(w, d.t.k)) {
      const size = 11 * px;
      text(ctx, group.path, x + 4 * px, y + size, `600 ${size}px ${palette.font}`, palette.fg, w - 8 * px, "left");
    }
  }
}

function drawEdges(ctx: CanvasRenderingContext2D, d: DrawInput, edges: Scene["edges"], lod: Lod, px: number): void {
  const { palette, scene } = d;
  const vertical = scene.direction === "TB" || scene.direction === "BT";
  const sel = d.marks.selected >= 0 ? (d.visible.nodeItem[d.marks.selected] as number) : -1;
  const plain: Scene["edges"] = [];
  const lit: Scene["edges"] = [];
  for (const e of edges)
    (e.from === sel || e.to === sel || (pathHas(d, e.from) && pathHas(d, e.to)) ? lit : plain).push(e);
  const stroke = (list: Scene["edges"], colour: string, width: number): void => {
    if (list.length === 0) return;
    ctx.beginPath();
    for (const e of list) trace(ctx, e.pts, vertical, lod.curves);
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.stroke();
    if (!lod.arrows) return;
    ctx.beginPath();
    for (const e of list) arrowHead(ctx, e.pts, vertical);
    ctx.fillStyle = colour;
    ctx.fill();
  };
  stroke(plain, palette.edge, Math.max(1.2, 0.8 * px));
  stroke(lit, palette.brand, Math.max(2.4, 1.6 * px));
}

function trace(ctx: CanvasRenderingContext2D, pts: Float64Array, vertical: boolean, curves: boolean): void {
  ctx.moveTo(pts[0] as number, pts[1] as number);
  for (let p = 2; p < pts.length; p += 2) {
    const ax = pts[p - 2] as number;
    const ay = pts[p - 1] as number;
    const bx = pts[p] as number;
    const by = pts[p + 1] as number;
    if (!curves) ctx.lineTo(bx, by);
    else if (vertical) ctx.bezierCurveTo(ax, (ay + by) / 2, bx, (ay + by) / 2, bx, by);
    else ctx.bezierCurveTo((ax + bx) / 2, ay, (ax + bx) / 2, by, bx, by);
  }
}

/** A small triangle at the end of the edge, along the rank axis (where the S-curves arrive). */
function arrowHead(ctx: CanvasRenderingContext2D, pts: Float64Array, vertical: boolean): void {
  const n = pts.length;
  const bx = pts[n - 2] as number;
  const by = pts[n - 1] as number;
  const ax = pts[n - 4] as number;
  const ay = pts[n - 3] as number;
  const s = 7;
  if (vertical) {
    const dir = by >= ay ? 1 : -1;
    ctx.moveTo(bx, by);
    ctx.lineTo(bx - s / 2, by - dir * s);
    ctx.lineTo(bx + s / 2, by - dir * s);
  } else {
    const dir = bx >= ax ? 1 : -1;
    ctx.moveTo(bx, by);
    ctx.lineTo(bx - dir * s, by - s / 2);
    ctx.lineTo(bx - dir * s, by + s / 2);
  }
  ctx.closePath();
}

function nodeStyle(d: DrawInput, i: number, item: number, px: number): Style {
  const { palette, ix, marks } = d;
  const kind = ix.kind[i];
  const bad = isNonFinite(ix, i) || marks.nonfinite.has(i);
  const style: Style = {
    fill: kind === KIND_LEAF ? palette.leafBg : kind === KIND_OPAQUE ? palette.bg2 : palette.nodeBg,
    stroke: kind === KIND_LEAF ? palette.leaf : palette.border,
    line: Math.max(1.2, px),
    dash: kind === KIND_OPAQUE ? [5, 3] : [],
    alpha: executed(ix, i) === false ? 0.5 : 1,
  };
  if (kind === KIND_ROOT || d.ix.roots.includes(i)) Object.assign(style, { stroke: palette.fg, line: 2.6 });
  if (bad) Object.assign(style, { stroke: palette.error, line: 2.4 });
  if (marks.added.has(i)) Object.assign(style, { stroke: palette.leaf, line: 3, dash: [6, 2] });
  if (item >= 0 && pathHas(d, item)) Object.assign(style, { stroke: palette.brand, line: Math.max(2, 1.5 * px) });
  if (i === marks.selected) Object.assign(style, { fill: palette.brandBg, stroke: palette.brand, line: 3, dash: [] });
  return style;
}

function groupStyle(d: DrawInput, item: number, px: number): Style {
  const { palette } = d;
  const group = d.tree.groups[(d.visible.items[item] as Item).ref] as Group;
  const style: Style = { fill: palette.bg2, stroke: palette.border, line: Math.max(1.5, px), dash: [], alpha: 1 };
  if (group.nonfinite > 0) Object.assign(style, { stroke: palette.error, line: 2.4 });
  if (pathHas(d, item)) Object.assign(style, { stroke: palette.brand, line: Math.max(2, 1.5 * px) });
  return style;
}

function drawBoxes(
  ctx: CanvasRenderingContext2D,
  d: DrawInput,
  targets: readonly number[],
  lod: Lod,
  px: number,
): void {
  const { scene } = d;
  const buckets = new Map<string, { style: Style; ids: number[]; pill: boolean }>();
  const add = (style: Style, id: number, pill: boolean): void => {
    const key = `${style.fill}|${style.stroke}|${style.line}|${style.dash.join(",")}|${style.alpha}|${pill}`;
    const b = buckets.get(key);
    if (b) b.ids.push(id);
    else buckets.set(key, { style, ids: [id], pill });
  };
  const stacks: number[] = [];
  for (const id of targets) {
    const kind = scene.kind[id];
    const ref = scene.ref[id] as number;
    if (kind === T_GROUP) {
      const group = d.tree.groups[(d.visible.items[ref] as Item).ref] as Group;
      if (group.series >= 2 || group.repeat) stacks.push(id);
      add(groupStyle(d, ref, px), id, false);
    } else if (kind === T_NODE) {
      const node = (d.visible.items[ref] as Item).ref;
      add(nodeStyle(d, node, ref, px), id, d.ix.kind[node] === KIND_LEAF);
    } else if (kind === T_LEAF) {
      add(nodeStyle(d, ref, -1, px), id, true);
    }
  }
  // Repeated blocks look stacked: a second outline peeking out behind the box.
  if (stacks.length > 0) {
    ctx.beginPath();
    for (const id of stacks)
      ctx.rect(
        (scene.grid.x[id] as number) + 4,
        (scene.grid.y[id] as number) + 4,
        scene.grid.w[id] as number,
        scene.grid.h[id] as number,
      );
    ctx.fillStyle = d.palette.border2;
    ctx.fill();
  }
  for (const { style, ids, pill } of buckets.values()) {
    ctx.globalAlpha = style.alpha;
    ctx.beginPath();
    for (const id of ids) {
      const x = scene.grid.x[id] as number;
      const y = scene.grid.y[id] as number;
      const w = scene.grid.w[id] as number;
      const h = scene.grid.h[id] as number;
      const r = lod.rounded ? (pill ? h / 2 : 4) : 0;
      if (r > 0 && typeof ctx.roundRect === "function") ctx.roundRect(x, y, w, h, r);
      else ctx.rect(x, y, w, h);
    }
    ctx.fillStyle = style.fill;
    ctx.fill();
    if (lod.strokes) {
      ctx.setLineDash(style.dash);
      ctx.strokeStyle = style.stroke;
      ctx.lineWidth = style.line;
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }
  ctx.globalAlpha = 1;
  if (lod.bars) drawBars(ctx, d, targets);
}

/** The gradient-norm bar along the bottom of each node box (log scale against the largest). */
function drawBars(ctx: CanvasRenderingContext2D, d: DrawInput, targets: readonly number[]): void {
  const { scene } = d;
  ctx.beginPath();
  for (const id of targets) {
    const node = scene.kind[id] === T_NODE ? targetNode(d, id) : -1;
    if (node < 0) continue;
    const weight = gradWeight(
      Number.isFinite(d.ix.gradNorm[node] as number) ? (d.ix.gradNorm[node] as number) : null,
      d.marks.maxNorm,
    );
    if (!weight) continue;
    const h = scene.grid.h[id] as number;
    const inset = d.ix.kind[node] === KIND_LEAF ? h / 2 : 4;
    const full = Math.max(0, (scene.grid.w[id] as number) - 2 * inset);
    ctx.rect(
      (scene.grid.x[id] as number) + inset,
      (scene.grid.y[id] as number) + h - 4,
      Math.max(1, full * weight),
      2.5,
    );
  }
  ctx.globalAlpha = 0.75;
  ctx.fillStyle = d.palette.brand;
  ctx.fill();
  ctx.globalAlpha = 1;
}
