// Layered (Sugiyama-style) layout of the backward graph, as a pure function of node sizes and edges.
//
// Roots sit at layer 0 and edges follow `next` (toward the leaves). Phases, all iterative so that a
// 20,000-deep chain cannot overflow the stack (dagre and elkjs do, DESIGN §5):
//   1. longest-path layering from a Kahn topological order (cycles, impossible in autograd but
//      possible in bad data, are broken instead of looping);
//   2. long edges split by dummy nodes (within a budget), so every ordered edge spans one layer;
//   3. a DFS-free initial order and a few barycenter sweeps (layout-order.ts);
//   4. breadth coordinates aligned to neighbours' barycenter with overlap resolution, rank
//      coordinates from layer depths (layout-coords.ts);
//   5. the frame mapped to screen coordinates for TB / BT / LR / RL.

import { assignBreadth, assignRank } from "./layout-coords";
import { initialOrder, type Layered, reduceCrossings } from "./layout-order";

export type Direction = "TB" | "BT" | "LR" | "RL";
export const DIRECTIONS: readonly Direction[] = ["TB", "BT", "LR", "RL"];

export function isDirection(x: unknown): x is Direction {
  return typeof x === "string" && (DIRECTIONS as readonly string[]).includes(x);
}

export interface LayoutInput {
  id: string;
  /** Box size on screen (the same for every direction). */
  width: number;
  height: number;
  /** Ids this node points to (its non-null `next` targets); unknown ids and self-loops are ignored. */
  next: readonly string[];
}

export interface LayoutOptions {
  direction: Direction;
  layerGap: number;
  nodeGap: number;
  /** Rounds of barycenter sweeps (each one down and one up). */
  sweeps: number;
  /** Rounds of neighbour alignment for the breadth coordinates. */
  alignPasses: number;
  /** Most dummy nodes to create; longer edges past the budget are drawn straight instead. */
  maxDummies: number;
  /**
   * Where a node sits in a layer deeper than itself: centred (default), or at the layer's start,
   * so that a box growing in one layer (an expanded group) moves nothing else in that layer.
   */
  align?: "centre" | "start";
  /** Called as each phase starts (layers, order, coordinates): progress for slow layouts. */
  onPhase?: (phase: LayoutPhase) => void;
}

export type LayoutPhase = "layers" | "order" | "coordinates";

/**
 * The dummy budget of a graph drawn at once on the main thread (the SVG view): ten per node. A
 * weight shared across the steps of an unrolled RNN sends an edge from every step to one leaf at
 * the bottom: 69k dummies for 1k nodes, and ordering them took 0.4 s. The longest edges past the
 * budget are drawn as direct curves.
 */
export function dummyBudget(nodes: number): number {
  return Math.max(5_000, 10 * nodes);
}

export const DEFAULT_LAYOUT_OPTIONS: LayoutOptions = {
  direction: "TB",
  layerGap: 36,
  nodeGap: 18,
  sweeps: 4,
  alignPasses: 4,
  maxDummies: 200_000,
};

export interface Point {
  x: number;
  y: number;
}

export interface PlacedNode {
  id: string;
  /** Centre of the box, in layout coordinates (top-left of the whole layout is 0, 0). */
  cx: number;
  cy: number;
  width: number;
  height: number;
  layer: number;
  /** Left-to-right rank inside its layer (in the TB frame). */
  order: number;
}

export interface PlacedEdge {
  from: string;
  to: string;
  /** How many `next` entries join the same pair (x * x gives MulBackward0 two edges to one node). */
  count: number;
  /** From the source's boundary through the dummy positions to the target's boundary. */
  points: Point[];
}

export interface Layout {
  direction: Direction;
  nodes: PlacedNode[];
  edges: PlacedEdge[];
  width: number;
  height: number;
  layerCount: number;
}

interface Edge {
  s: number;
  t: number;
  count: number;
}

const DUMMY_BREADTH = 8;

export function computeLayout(input: readonly LayoutInput[], options: Partial<LayoutOptions> = {}): Layout {
  const opts = { ...DEFAULT_LAYOUT_OPTIONS, ...options };
  const n = input.length;
  const index = new Map<string, number>();
  input.forEach((d, i) => {
    index.set(d.id, i);
  });
  const edges = collectEdges(input, index);
  opts.onPhase?.("layers");
  const layerOf = longestPathLayers(n, edges);
  const { g, chains } = splitLongEdges(n, layerOf, edges, opts.maxDummies);
  opts.onPhase?.("order");
  initialOrder(
    g,
    (g.layers[0] ?? []).filter((v) => v < n),
  );
  reduceCrossings(g, opts.sweeps);
  opts.onPhase?.("coordinates");

  const vertical = opts.direction === "TB" || opts.direction === "BT";
  const breadth = new Float64Array(g.count).fill(DUMMY_BREADTH);
  const depth = new Float64Array(g.count);
  input.forEach((d, i) => {
    breadth[i] = vertical ? d.width : d.height;
    depth[i] = vertical ? d.height : d.width;
  });
  const b = assignBreadth(g, breadth, opts.nodeGap, opts.alignPasses);
  const rank = assignRank(g, depth, opts.layerGap);
  const startAligned = opts.align === "start";
  // Rank coordinate of a node's centre (dummies, of no depth, stay on the layer's centre line).
  const rankOf = (v: number): number => {
    const l = g.layerOf[v] as number;
    return startAligned && v < n ? (rank.start[l] as number) + (depth[v] as number) / 2 : (rank.centre[l] as number);
  };
  const frame = new Frame(opts.direction, b, breadth, rank.extent);
  const order = new Int32Array(g.count);
  for (const layer of g.layers) {
    layer.forEach((v, i) => {
      order[v] = i;
    });
  }

  const nodes = input.map((d, i): PlacedNode => {
    const p = frame.point(b[i] as number, rankOf(i));
    return {
      id: d.id,
      cx: p.x,
      cy: p.y,
      width: d.width,
      height: d.height,
      layer: layerOf[i] as number,
      order: order[i] as number,
    };
  });
  const placedEdges = edges.map((e, k): PlacedEdge => {
    const chain = chains[k] as number[];
    const points = chain.map((v, j) => {
      const r = rankOf(v);
      const half = (depth[v] as number) / 2;
      return frame.point(b[v] as number, j === 0 ? r + half : j === chain.length - 1 ? r - half : r);
    });
    return { from: (input[e.s] as LayoutInput).id, to: (input[e.t] as LayoutInput).id, count: e.count, points };
  });
  const size = frame.size();
  return { direction: opts.direction, nodes, edges: placedEdges, ...size, layerCount: g.layers.length };
}

/** Distinct edges (by pair of endpoints, with a multiplicity), skipping unknown targets and self-loops. */
function collectEdges(input: readonly LayoutInput[], index: ReadonlyMap<string, number>): Edge[] {
  const edges: Edge[] = [];
  const seen = new Map<number, Edge>();
  input.forEach((d, s) => {
    for (const id of d.next) {
      const t = index.get(id);
      if (t === undefined || t === s) continue;
      const key = s * input.length + t;
      const known = seen.get(key);
      if (known) known.count++;
      else {
        const e = { s, t, count: 1 };
        seen.set(key, e);
        edges.push(e);
      }
    }
  });
  return edges;
}

/**
 * Longest-path layering over a Kahn topological order: a node's layer is one more than its deepest
 * parent's. When the queue runs dry with nodes left, the graph has a cycle: the first unprocessed
 * node is forced in and edges back into processed nodes are ignored, so this always terminates.
 */
export function longestPathLayers(n: number, edges: readonly Edge[]): Int32Array {
  const start = new Int32Array(n + 1);
  for (const e of edges) start[e.s + 1] = (start[e.s + 1] as number) + 1;
  for (let i = 0; i < n; i++) start[i + 1] = (start[i + 1] as number) + (start[i] as number);
  const targets = new Int32Array(edges.length);
  const fill = start.slice(0, n);
  const indegree = new Int32Array(n);
  for (const e of edges) {
    targets[fill[e.s] as number] = e.t;
    fill[e.s] = (fill[e.s] as number) + 1;
    indegree[e.t] = (indegree[e.t] as number) + 1;
  }
  const layer = new Int32Array(n);
  const queued = new Uint8Array(n);
  const queue = new Int32Array(n);
  let head = 0;
  let tail = 0;
  const enqueue = (v: number): void => {
    queued[v] = 1;
    queue[tail++] = v;
  };
  for (let v = 0; v < n; v++) if (indegree[v] === 0) enqueue(v);
  let scan = 0;
  while (head < n) {
    if (head === tail) {
      while (queued[scan]) scan++;
      enqueue(scan);
    }
    const v = queue[head++] as number;
    for (let k = start[v] as number; k < (start[v + 1] as number); k++) {
      const t = targets[k] as number;
      if (queued[t]) continue;
      layer[t] = Math.max(layer[t] as number, (layer[v] as number) + 1);
      indegree[t] = (indegree[t] as number) - 1;
      if (indegree[t] === 0) enqueue(t);
    }
  }
  return layer;
}

/**
 * Split every edge that spans several layers into a chain of dummy nodes, shortest edges first,
 * until `maxDummies` is spent. Edges that do not point downward (cycle breaks) or that were over the
 * budget stay out of the ordering and are drawn as a direct curve. Returns each edge's node chain.
 */
function splitLongEdges(
  n: number,
  layerOf: Int32Array,
  edges: readonly Edge[],
  maxDummies: number,
): { g: Layered; chains: number[][] } {
  const span = (e: Edge): number => (layerOf[e.t] as number) - (layerOf[e.s] as number);
  const long = edges.filter((e) => span(e) > 1).sort((a, c) => span(a) - span(c));
  const split = new Set<Edge>();
  let dummies = 0;
  for (const e of long) {
    if (dummies + span(e) - 1 > maxDummies) break;
    dummies += span(e) - 1;
    split.add(e);
  }
  const count = n + dummies;
  const g: Layered = {
    count,
    layerOf: new Int32Array(count),
    layers: [],
    up: Array.from({ length: count }, () => []),
    down: Array.from({ length: count }, () => []),
  };
  g.layerOf.set(layerOf);
  const link = (a: number, c: number): void => {
    (g.down[a] as number[]).push(c);
    (g.up[c] as number[]).push(a);
  };
  let next = n;
  const chains = edges.map((e): number[] => {
    if (span(e) === 1) link(e.s, e.t);
    if (!split.has(e)) return [e.s, e.t];
    const chain = [e.s];
    for (let k = 1; k < span(e); k++) {
      g.layerOf[next] = (layerOf[e.s] as number) + k;
      link(chain[chain.length - 1] as number, next);
      chain.push(next++);
    }
    link(chain[chain.length - 1] as number, e.t);
    chain.push(e.t);
    return chain;
  });
  let layers = 0;
  for (let v = 0; v < count; v++) layers = Math.max(layers, (g.layerOf[v] as number) + 1);
  g.layers = Array.from({ length: layers }, () => []);
  for (let v = 0; v < count; v++) (g.layers[g.layerOf[v] as number] as number[]).push(v);
  return { g, chains };
}

/** Maps the abstract (breadth, rank) frame to screen coordinates for one direction, origin at 0, 0. */
class Frame {
  private readonly minBreadth: number;
  private readonly breadthExtent: number;

  constructor(
    private readonly direction: Direction,
    b: Float64Array,
    breadth: Float64Array,
    private readonly rankExtent: number,
  ) {
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (let v = 0; v < b.length; v++) {
      lo = Math.min(lo, (b[v] as number) - (breadth[v] as number) / 2);
      hi = Math.max(hi, (b[v] as number) + (breadth[v] as number) / 2);
    }
    this.minBreadth = b.length > 0 ? lo : 0;
    this.breadthExtent = b.length > 0 ? hi - lo : 0;
  }

  point(breadth: number, rank: number): Point {
    const u = breadth - this.minBreadth;
    switch (this.direction) {
      case "TB":
        return { x: u, y: rank };
      case "BT":
        return { x: u, y: this.rankExtent - rank };
      case "LR":
        return { x: rank, y: u };
      case "RL":
        return { x: this.rankExtent - rank, y: u };
    }
  }

  size(): { width: number; height: number } {
    const vertical = this.direction === "TB" || this.direction === "BT";
    return vertical
      ? { width: this.breadthExtent, height: this.rankExtent }
      : { width: this.rankExtent, height: this.breadthExtent };
  }
}
