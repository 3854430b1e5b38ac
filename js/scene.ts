// The big-graph view's scene: every visible item, frame header and folded leaf placed in absolute
// layout coordinates (levels nest: a frame's level starts inside its padding, under its header),
// the edges between items (routed through the level's dummy points when both ends sit in one
// level, else a direct curve), and a spatial grid of everything clickable. Built in O(visible)
// from cached level layouts; what the canvas draws, picks and the minimap shows.

import { FRAME_HEADER, FRAME_PAD, LEAF_GAP, LEAF_HEIGHT, LEAF_INDENT, leafPillWidth, type Size } from "./big-label";
import type { GraphIndex } from "./graph-index";
import type { Direction } from "./layout";
import type { LevelLayout } from "./layout-job";
import { SpatialGrid } from "./spatial";
import { ITEM_FRAME, ITEM_NODE, type Item, type Visible } from "./visible";

/** What a clickable target is. */
export const T_NODE = 0;
export const T_GROUP = 1;
export const T_HEADER = 2;
export const T_LEAF = 3;

export interface SceneEdge {
  from: number;
  to: number;
  count: number;
  /** x, y pairs in absolute coordinates, from the source's boundary to the target's. */
  pts: Float64Array;
  /** The bounding box of the points, for culling. */
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface Scene {
  direction: Direction;
  width: number;
  height: number;
  /** Absolute top-left and size of each item; NaN when not placed. */
  x: Float64Array;
  y: Float64Array;
  w: Float64Array;
  h: Float64Array;
  /** Width of a node item's own box (the rest is its folded-leaf column). */
  boxW: Float64Array;
  /** Frame items, outer ones first. */
  frames: number[];
  /** Layer and order of each item inside its level (keyboard steps to the neighbour). */
  layer: Int32Array;
  order: Int32Array;
  edges: SceneEdge[];
  /** Clickable targets: T_* kind and the item (or, for T_LEAF, the node) each one is. */
  kind: Uint8Array;
  ref: Int32Array;
  grid: SpatialGrid;
  /** Target of each item (its box, or a frame's header); -1 when not placed. */
  itemTarget: Int32Array;
  /** Target of each folded leaf, by node index. */
  leafTarget: ReadonlyMap<number, number>;
}

/** `flat`: the flat view (labels keep module paths, as node-item sizes did). */
export function composeScene(
  ix: GraphIndex,
  visible: Visible,
  layouts: readonly (LevelLayout | undefined)[],
  sizes: readonly Size[],
  direction: Direction,
  flat = false,
): Scene {
  const { items, levels } = visible;
  const m = items.length;
  const x = new Float64Array(m).fill(Number.NaN);
  const y = new Float64Array(m).fill(Number.NaN);
  const w = new Float64Array(m);
  const h = new Float64Array(m);
  const boxW = new Float64Array(m);
  const layer = new Int32Array(m).fill(-1);
  const order = new Int32Array(m).fill(-1);
  const ox = new Float64Array(levels.length);
  const oy = new Float64Array(levels.length);
  const frames: number[] = [];
  // Parents' levels come first, so a frame is placed before the level inside it.
  levels.forEach((level, li) => {
    const layout = layouts[li];
    if (level.frame >= 0) {
      const f = level.frame;
      if (Number.isNaN(x[f] as number) || !layout) return;
      ox[li] = (x[f] as number) + FRAME_PAD;
      oy[li] = (y[f] as number) + FRAME_HEADER + FRAME_PAD;
      frames.push(f);
    }
    if (!layout) return;
    level.items.forEach((it, k) => {
      x[it] = (ox[li] as number) + (layout.x[k] as number);
      y[it] = (oy[li] as number) + (layout.y[k] as number);
      w[it] = layout.w[k] as number;
      h[it] = layout.h[k] as number;
      layer[it] = layout.layer[k] as number;
      order[it] = layout.order[k] as number;
      const item = items[it] as Item;
      boxW[it] = item.kind === ITEM_NODE ? (sizes[it] as Size).width : (w[it] as number);
    });
  });
  const root = layouts[0];
  const targets = buildTargets(ix, items, x, y, w, h, boxW, flat);
  const edges = routeEdges(visible, layouts, ox, oy, x, y, w, h, boxW, direction);
  const width = root?.width ?? 0;
  const height = root?.height ?? 0;
  const grid = new SpatialGrid(targets.x, targets.y, targets.w, targets.h, width, height);
  return { direction, width, height, x, y, w, h, boxW, frames, layer, order, edges, ...targets.meta, grid };
}

function buildTargets(
  ix: GraphIndex,
  items: readonly Item[],
  x: Float64Array,
  y: Float64Array,
  w: Float64Array,
  h: Float64Array,
  boxW: Float64Array,
  flat: boolean,
) {
  const tx: number[] = [];
  const ty: number[] = [];
  const tw: number[] = [];
  const th: number[] = [];
  const kind: number[] = [];
  const ref: number[] = [];
  const itemTarget = new Int32Array(items.length).fill(-1);
  const leafTarget = new Map<number, number>();
  const add = (k: number, r: number, bx: number, by: number, bw: number, bh: number): number => {
    tx.push(bx);
    ty.push(by);
    tw.push(bw);
    th.push(bh);
    kind.push(k);
    ref.push(r);
    return kind.length - 1;
  };
  items.forEach((item, it) => {
    const bx = x[it] as number;
    if (Number.isNaN(bx)) return;
    const by = y[it] as number;
    if (item.kind === ITEM_FRAME) {
      itemTarget[it] = add(T_HEADER, it, bx, by, w[it] as number, FRAME_HEADER);
      return;
    }
    if (item.kind !== ITEM_NODE) {
      itemTarget[it] = add(T_GROUP, it, bx, by, w[it] as number, h[it] as number);
      return;
    }
    itemTarget[it] = add(T_NODE, it, bx, by, boxW[it] as number, h[it] as number);
    item.leaves.forEach((leaf, k) => {
      const ly = by + k * (LEAF_HEIGHT + LEAF_GAP);
      leafTarget.set(
        leaf,
        add(T_LEAF, leaf, bx + (boxW[it] as number) + LEAF_INDENT, ly, leafPillWidth(ix, leaf, flat), LEAF_HEIGHT),
      );
    });
  });
  return {
    x: Float64Array.from(tx),
    y: Float64Array.from(ty),
    w: Float64Array.from(tw),
    h: Float64Array.from(th),
    meta: { kind: Uint8Array.from(kind), ref: Int32Array.from(ref), itemTarget, leafTarget },
  };
}

function routeEdges(
  visible: Visible,
  layouts: readonly (LevelLayout | undefined)[],
  ox: Float64Array,
  oy: Float64Array,
  x: Float64Array,
  y: Float64Array,
  w: Float64Array,
  h: Float64Array,
  boxW: Float64Array,
  direction: Direction,
): SceneEdge[] {
  const { items } = visible;
  // Per level, the routed edges of its layout by (from, to) local positions.
  const routed = new Map<number, Map<number, number>>();
  const routesOf = (li: number, layout: LevelLayout): Map<number, number> => {
    let map = routed.get(li);
    if (!map) {
      map = new Map();
      const n = layout.x.length;
      for (let k = 0; k < layout.edgeFrom.length; k++)
        map.set((layout.edgeFrom[k] as number) * n + (layout.edgeTo[k] as number), k);
      routed.set(li, map);
    }
    return map;
  };
  const vertical = direction === "TB" || direction === "BT";
  const forward = direction === "TB" || direction === "LR";
  // Where an edge leaves (out) or enters an item: the middle of the node box's side facing the leaves or the roots.
  const port = (it: number, out: boolean): [number, number] => {
    const bx = x[it] as number;
    const by = y[it] as number;
    const far = out === forward;
    if (vertical) return [bx + (boxW[it] as number) / 2, far ? by + (h[it] as number) : by];
    return [far ? bx + (w[it] as number) : bx, by + (h[it] as number) / 2];
  };
  const edges: SceneEdge[] = [];
  for (const e of visible.edges) {
    const a = items[e.from] as Item;
    const b = items[e.to] as Item;
    if (Number.isNaN(x[e.from] as number) || Number.isNaN(x[e.to] as number)) continue;
    let pts: Float64Array;
    const layout = a.level === b.level ? layouts[a.level] : undefined;
    const k = layout ? routesOf(a.level, layout).get(a.local * layout.x.length + b.local) : undefined;
    if (layout && k !== undefined) {
      const s = layout.pointStart[k] as number;
      const t = layout.pointStart[k + 1] as number;
      pts = new Float64Array(2 * (t - s));
      for (let p = s; p < t; p++) {
        pts[2 * (p - s)] = (layout.points[2 * p] as number) + (ox[a.level] as number);
        pts[2 * (p - s) + 1] = (layout.points[2 * p + 1] as number) + (oy[a.level] as number);
      }
      // The layout aims at the middle of the whole item; a node with folded leaves has its box on the left.
      if (vertical) {
        pts[0] = port(e.from, true)[0];
        pts[pts.length - 2] = port(e.to, false)[0];
      }
    } else pts = Float64Array.from([...port(e.from, true), ...port(e.to, false)]);
    let x0 = Number.POSITIVE_INFINITY;
    let y0 = Number.POSITIVE_INFINITY;
    let x1 = Number.NEGATIVE_INFINITY;
    let y1 = Number.NEGATIVE_INFINITY;
    for (let p = 0; p < pts.length; p += 2) {
      x0 = Math.min(x0, pts[p] as number);
      x1 = Math.max(x1, pts[p] as number);
      y0 = Math.min(y0, pts[p + 1] as number);
      y1 = Math.max(y1, pts[p + 1] as number);
    }
    edges.push({ from: e.from, to: e.to, count: e.count, pts, x0, y0, x1, y1 });
  }
  return edges;
}
