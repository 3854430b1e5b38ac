// Ordering phase of the layered layout: which node goes left of which inside each layer.
// Everything here is a loop over arrays (no recursion), because backward graphs are 10k–50k layers
// deep and a recursive DFS overflows the browser's stack (DESIGN §5: dagre and elkjs do).

/**
 * A proper layered graph: every edge in `up` / `down` joins two adjacent layers (long edges were
 * split by dummy nodes before). Nodes are indices; `layers[l]` lists layer `l` left to right.
 */
export interface Layered {
  /** Real nodes plus dummy nodes. */
  count: number;
  layerOf: Int32Array;
  layers: number[][];
  /** Neighbours in the layer above (toward the roots). */
  up: number[][];
  /** Neighbours in the layer below (toward the leaves). */
  down: number[][];
}

/**
 * A first order without DFS: layer 0 keeps the given order (roots as Python listed them), and each
 * later layer takes its nodes in the order their first parent appears above. Children therefore
 * start under their parents, which is most of what a barycenter sweep would do anyway.
 */
export function initialOrder(g: Layered, layer0: readonly number[]): void {
  const placed = new Uint8Array(g.count);
  for (const v of layer0) placed[v] = 1;
  const byLayer: number[][] = g.layers.map(() => []);
  byLayer[0] = [...layer0];
  for (let l = 0; l + 1 < g.layers.length; l++) {
    const below = byLayer[l + 1] as number[];
    for (const v of byLayer[l] as number[]) {
      for (const w of g.down[v] as number[]) {
        if (!placed[w]) {
          placed[w] = 1;
          below.push(w);
        }
      }
    }
    // Nodes reached only through edges left out of ordering (cycle breaks) keep their given order.
    for (const w of g.layers[l + 1] as number[]) {
      if (!placed[w]) {
        placed[w] = 1;
        below.push(w);
      }
    }
  }
  g.layers = byLayer;
}

/** Position of every node inside its layer. */
export function positions(g: Layered): Int32Array {
  const pos = new Int32Array(g.count);
  for (const layer of g.layers) for (let i = 0; i < layer.length; i++) pos[layer[i] as number] = i;
  return pos;
}

/**
 * Reorder one layer by the mean position of its neighbours in the reference layer. A node without
 * such neighbours keeps its current position as its key, so it stays roughly where it was.
 */
function sortLayer(layer: number[], neighbours: number[][], pos: Int32Array): void {
  if (layer.length < 2) return; // most layers of a deep chain: nothing to order
  const key = new Map<number, number>();
  for (const v of layer) {
    const ns = neighbours[v] as number[];
    if (ns.length === 0) {
      key.set(v, pos[v] as number);
      continue;
    }
    let sum = 0;
    for (const w of ns) sum += pos[w] as number;
    key.set(v, sum / ns.length);
  }
  // Array.prototype.sort is stable, so ties keep their current order and sweeps cannot flip-flop.
  layer.sort((a, b) => (key.get(a) as number) - (key.get(b) as number));
  for (let i = 0; i < layer.length; i++) pos[layer[i] as number] = i;
}

/** Edge crossings between layer `l` and `l + 1`, counted as inversions with a Fenwick tree: O(E log V). */
function crossingsBetween(g: Layered, l: number, pos: Int32Array): number {
  const lower = g.layers[l + 1] as number[];
  const tree = new Int32Array(lower.length + 1);
  let inserted = 0;
  let crossings = 0;
  for (const v of g.layers[l] as number[]) {
    const targets = (g.down[v] as number[]).map((w) => pos[w] as number).sort((a, b) => a - b);
    for (const p of targets) {
      // Count already inserted targets strictly right of p: they cross this edge.
      let atMost = 0;
      for (let i = p + 1; i > 0; i -= i & -i) atMost += tree[i] as number;
      crossings += inserted - atMost;
      for (let i = p + 1; i <= lower.length; i += i & -i) tree[i] = (tree[i] as number) + 1;
      inserted++;
    }
  }
  return crossings;
}

export function countCrossings(g: Layered, pos: Int32Array): number {
  let total = 0;
  for (let l = 0; l + 1 < g.layers.length; l++) total += crossingsBetween(g, l, pos);
  return total;
}

/**
 * Barycenter heuristic: `sweeps` rounds of a downward pass (order by parents) and an upward pass
 * (order by children), keeping the order with the fewest crossings seen. Bounded work: each round
 * is O(E log V), and it stops early once nothing crosses.
 */
export function reduceCrossings(g: Layered, sweeps: number): void {
  const pos = positions(g);
  let best = countCrossings(g, pos);
  let bestLayers = g.layers.map((layer) => [...layer]);
  for (let round = 0; round < sweeps && best > 0; round++) {
    for (let l = 1; l < g.layers.length; l++) sortLayer(g.layers[l] as number[], g.up, pos);
    for (let l = g.layers.length - 2; l >= 0; l--) sortLayer(g.layers[l] as number[], g.down, pos);
    const crossings = countCrossings(g, pos);
    if (crossings < best) {
      best = crossings;
      bestLayers = g.layers.map((layer) => [...layer]);
    }
  }
  g.layers = bestLayers;
}
