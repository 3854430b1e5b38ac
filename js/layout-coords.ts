// Coordinate phase of the layered layout, in an abstract frame: "breadth" runs along a layer (x for
// top-to-bottom), "rank" runs from the roots to the leaves (y for top-to-bottom). layout.ts turns
// the frame into screen coordinates for each direction. Loops only, no recursion (see layout-order.ts).

import type { Layered } from "./layout-order";

/**
 * Breadth centre of every node. Layers start packed and centred on 0; then a few passes move each
 * node toward the mean of its neighbours in the layer above (downward pass) or below (upward pass),
 * resolving overlaps with a least-squares fit that keeps the order and the minimum gaps.
 */
export function assignBreadth(g: Layered, breadth: Float64Array, gap: number, passes: number): Float64Array {
  const x = new Float64Array(g.count);
  for (const layer of g.layers) packCentred(layer, x, breadth, gap);
  for (let p = 0; p < passes; p++) {
    for (let l = 1; l < g.layers.length; l++) alignLayer(g.layers[l] as number[], g.up, x, breadth, gap);
    for (let l = g.layers.length - 2; l >= 0; l--) alignLayer(g.layers[l] as number[], g.down, x, breadth, gap);
  }
  return x;
}

function packCentred(layer: readonly number[], x: Float64Array, breadth: Float64Array, gap: number): void {
  let total = gap * Math.max(0, layer.length - 1);
  for (const v of layer) total += breadth[v] as number;
  let cursor = -total / 2;
  for (const v of layer) {
    const b = breadth[v] as number;
    x[v] = cursor + b / 2;
    cursor += b + gap;
  }
}

/**
 * Move the nodes of one layer as close as possible to their neighbours' mean, in order, without
 * overlap. With offsets o[i] (the least distance from node 0 to node i), placing x[i] = z[i] + o[i]
 * respects every gap exactly when z is non-decreasing, so the best placement is the isotonic
 * regression of (desired − o): pool-adjacent-violators, O(n) per layer.
 */
function alignLayer(
  layer: readonly number[],
  neighbours: readonly number[][],
  x: Float64Array,
  breadth: Float64Array,
  gap: number,
): void {
  const n = layer.length;
  const target = new Float64Array(n);
  const weight = new Float64Array(n);
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const v = layer[i] as number;
    if (i > 0) offset += ((breadth[layer[i - 1] as number] as number) + (breadth[v] as number)) / 2 + gap;
    const ns = neighbours[v] as number[];
    let desired = x[v] as number;
    if (ns.length > 0) {
      desired = 0;
      for (const w of ns) desired += x[w] as number;
      desired /= ns.length;
    }
    // A node with no neighbours on that side has no opinion: let it yield to those that have one.
    weight[i] = ns.length > 0 ? 1 : 0.05;
    target[i] = desired - offset;
  }
  const z = isotonic(target, weight);
  offset = 0;
  for (let i = 0; i < n; i++) {
    const v = layer[i] as number;
    if (i > 0) offset += ((breadth[layer[i - 1] as number] as number) + (breadth[v] as number)) / 2 + gap;
    x[v] = (z[i] as number) + offset;
  }
}

/** Weighted least-squares non-decreasing fit of `y` (pool adjacent violators, with a block stack). */
export function isotonic(y: Float64Array, w: Float64Array): Float64Array {
  const n = y.length;
  const mean = new Float64Array(n);
  const mass = new Float64Array(n);
  const size = new Int32Array(n);
  let top = -1;
  for (let i = 0; i < n; i++) {
    top++;
    mean[top] = y[i] as number;
    mass[top] = w[i] as number;
    size[top] = 1;
    while (top > 0 && (mean[top - 1] as number) > (mean[top] as number)) {
      const m = (mass[top - 1] as number) + (mass[top] as number);
      mean[top - 1] =
        ((mean[top - 1] as number) * (mass[top - 1] as number) + (mean[top] as number) * (mass[top] as number)) / m;
      mass[top - 1] = m;
      size[top - 1] = (size[top - 1] as number) + (size[top] as number);
      top--;
    }
  }
  const out = new Float64Array(n);
  let i = 0;
  for (let b = 0; b <= top; b++) for (let k = 0; k < (size[b] as number); k++) out[i++] = mean[b] as number;
  return out;
}

/** Rank start and centre of every layer: each layer is as deep as its deepest node, `gap` apart. */
export function assignRank(
  g: Layered,
  depth: Float64Array,
  gap: number,
): { start: Float64Array; centre: Float64Array; extent: number } {
  const centre = new Float64Array(g.layers.length);
  const start = new Float64Array(g.layers.length);
  let cursor = 0;
  for (let l = 0; l < g.layers.length; l++) {
    let deepest = 0;
    for (const v of g.layers[l] as number[]) deepest = Math.max(deepest, depth[v] as number);
    start[l] = cursor;
    centre[l] = cursor + deepest / 2;
    cursor += deepest + gap;
  }
  return { start, centre, extent: Math.max(0, cursor - gap) };
}
