// Where the view shows a node that has no module. A tensor debugger knows an op's module only when
// the op consumes a parameter (`layer1.weight` → `layer1`), so in `gs.debugger(loss, params=model)`
// most ops (activations, reshapes, attention arithmetic, residual adds) come without one: 6,462 of
// 10,642 nodes for 190 transformer layers. Left at the top level they bury the groups. A node
// sandwiched between nodes of one module (parents toward the root and children toward the leaves
// both inside it) is shown in the deepest group holding all of them: the ReLU between `150.linear1`
// and `150.linear2` goes to `150`, and so does a chain of such nodes; an add between
// `layers.3` and `layers.4` goes to `layers`. Nodes outside every module (the loss), between
// top-level modules, and leaves stay where they are.
// Display only: the node's own module (the inspector's) stays unknown. Two linear passes.

import { type GraphIndex, KIND_LEAF } from "./graph-index";

interface Tree {
  parent: number;
  depth: number;
}

/** The deepest group holding both `a` and `b` (-1 stands for "nothing yet"). */
function common(groups: readonly Tree[], a: number, b: number): number {
  if (a < 0) return b;
  if (b < 0) return a;
  let x = a;
  let y = b;
  while (x !== y) {
    const dx = (groups[x] as Tree).depth;
    const dy = (groups[y] as Tree).depth;
    if (dx >= dy) x = (groups[x] as Tree).parent;
    if (dy >= dx) y = (groups[y] as Tree).parent;
  }
  return x;
}

/** Nodes in topological order (parents first), by Kahn's algorithm; a cycle's rest comes last. */
function topological(ix: GraphIndex): Int32Array {
  const n = ix.count;
  const waiting = new Int32Array(n);
  for (let i = 0; i < n; i++) waiting[i] = (ix.inStart[i + 1] as number) - (ix.inStart[i] as number);
  const order = new Int32Array(n);
  const done = new Uint8Array(n);
  let tail = 0;
  for (let i = 0; i < n; i++) if (waiting[i] === 0) order[tail++] = i;
  for (let head = 0; head < tail; head++) {
    const v = order[head] as number;
    done[v] = 1;
    let last = -1;
    for (let k = ix.outStart[v] as number; k < (ix.outStart[v + 1] as number); k++) {
      const c = ix.outTargets[k] as number;
      if (c < 0 || c === last) continue;
      last = c;
      waiting[c] = (waiting[c] as number) - 1;
      if (waiting[c] === 0) order[tail++] = c;
    }
  }
  for (let i = 0; tail < n && i < n; i++) if (!done[i] && (waiting[i] as number) > 0) order[tail++] = i;
  return order;
}

/**
 * Move loose nodes (no module, not leaves; in `root` now) into the group their neighbours share.
 * Each side (parents, children) is the common group of its neighbours that have a module, or when
 * there are none, of what its loose neighbours found on that side. `groupOf` is updated in place;
 * returns a mark for every node that moved.
 */
export function placeLoose(ix: GraphIndex, groupOf: Int32Array, groups: readonly Tree[], root: number): Uint8Array {
  const n = ix.count;
  const placed = new Uint8Array(n);
  const loose = (i: number): boolean => !ix.modules[i] && ix.kind[i] !== KIND_LEAF;
  const side = (start: Uint32Array, list: Int32Array, i: number, found: Int32Array): number => {
    let grouped = -1;
    let carried = -1;
    for (let k = start[i] as number; k < (start[i + 1] as number); k++) {
      const m = list[k] as number;
      if (m < 0 || ix.kind[m] === KIND_LEAF) continue;
      if (!loose(m)) grouped = common(groups, grouped, groupOf[m] as number);
      else carried = common(groups, carried, found[m] as number);
    }
    return grouped >= 0 ? grouped : carried;
  };
  const order = topological(ix);
  const up = new Int32Array(n).fill(-1);
  const down = new Int32Array(n).fill(-1);
  for (const i of order) if (loose(i)) up[i] = side(ix.inStart, ix.inSources, i, up);
  for (let k = n - 1; k >= 0; k--) {
    const i = order[k] as number;
    if (loose(i)) down[i] = side(ix.outStart, ix.outTargets, i, down);
  }
  for (let i = 0; i < n; i++) {
    if (!loose(i) || (up[i] as number) < 0 || (down[i] as number) < 0) continue;
    const g = common(groups, up[i] as number, down[i] as number);
    if (g === root) continue;
    groupOf[i] = g;
    placed[i] = 1;
  }
  return placed;
}
