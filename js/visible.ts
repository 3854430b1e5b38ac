// What the big-graph view shows for one expansion state: the visible items (nodes, collapsed
// groups, and frames of expanded groups), arranged in levels (one per expanded group, the root
// level first), the node → item map that every click, search hit and edge goes through, folded
// `AccumulateGrad` leaves beside their consumer, and the edges between items. Only what is visible
// is laid out: a level's layout sees its own items and the edges between them, lifted from deeper
// items to the frames that hold them. Pure data, O(nodes + edges × group depth).

import { type GraphIndex, KIND_LEAF } from "./graph-index";
import { type Group, type GroupTree, ROOT_GROUP } from "./groups";

export const ITEM_NODE = 0;
export const ITEM_GROUP = 1;
export const ITEM_FRAME = 2;
export type ItemKind = typeof ITEM_NODE | typeof ITEM_GROUP | typeof ITEM_FRAME;

export interface Item {
  kind: ItemKind;
  /** A node index (ITEM_NODE) or a group index. */
  ref: number;
  /** The level the item sits in. */
  level: number;
  /** Its position in that level's item list. */
  local: number;
  /** Folded leaves drawn beside this node (ITEM_NODE only). */
  leaves: number[];
}

export interface Level {
  /** The expanded group (ROOT_GROUP for the whole canvas). */
  group: number;
  /** The frame item of this level in its parent level; -1 for the root level. */
  frame: number;
  parent: number;
  depth: number;
  items: number[];
  /** Pairs of local item positions: edges between this level's items, lifted from inside frames. */
  edges: number[];
}

export interface VisibleEdge {
  from: number;
  to: number;
  /** How many graph edges it stands for. */
  count: number;
}

export interface Visible {
  items: Item[];
  levels: Level[];
  /** The item that shows each node: its own, its consumer's (a folded leaf) or a collapsed group. */
  nodeItem: Int32Array;
  /** For a folded leaf, the node it is drawn beside; -1 otherwise. */
  host: Int32Array;
  /** The frame or box of each group, -1 when hidden inside a collapsed one. */
  groupItem: Int32Array;
  edges: VisibleEdge[];
}

export interface ShowOptions {
  /** One level with every node, no groups. */
  flat: boolean;
  /** Leaves beside their first consumer instead of as nodes of their own. */
  foldLeaves: boolean;
  expanded: ReadonlySet<number>;
}

export function computeVisible(ix: GraphIndex, tree: GroupTree, opts: ShowOptions): Visible {
  const n = ix.count;
  const groupCount = tree.groups.length;
  const items: Item[] = [];
  const levels: Level[] = [{ group: ROOT_GROUP, frame: -1, parent: -1, depth: 0, items: [], edges: [] }];
  const groupLevel = new Int32Array(groupCount).fill(-1);
  const groupItem = new Int32Array(groupCount).fill(-1);
  const rep = new Int32Array(groupCount).fill(-1);
  groupLevel[ROOT_GROUP] = 0;
  const newItem = (kind: ItemKind, ref: number, level: number): number => {
    items.push({ kind, ref, level, local: -1, leaves: [] });
    return items.length - 1;
  };
  if (!opts.flat) {
    // Parents come before children in tree.groups.
    for (let g = 1; g < groupCount; g++) {
      const group = tree.groups[g] as Group;
      const parentLevel = groupLevel[group.parent] as number;
      if (parentLevel < 0) {
        rep[g] = rep[group.parent] as number;
        continue;
      }
      if (opts.expanded.has(g)) {
        groupItem[g] = newItem(ITEM_FRAME, g, parentLevel);
        groupLevel[g] = levels.length;
        const depth = (levels[parentLevel] as Level).depth + 1;
        levels.push({ group: g, frame: groupItem[g] as number, parent: parentLevel, depth, items: [], edges: [] });
      } else {
        groupItem[g] = newItem(ITEM_GROUP, g, parentLevel);
        rep[g] = groupItem[g] as number;
      }
    }
  }
  const host = foldedHosts(ix, opts.foldLeaves);
  const nodeItem = new Int32Array(n).fill(-1);
  const placed = new Uint8Array(items.length + n);
  // A level's items in the order their first node appears in the graph (roots first), so the
  // layout's initial order starts from the roots as Python listed them.
  const place = (item: number): void => {
    for (let at = item; at >= 0 && !placed[at]; ) {
      placed[at] = 1;
      const it = items[at] as Item;
      const level = levels[it.level] as Level;
      it.local = level.items.length;
      level.items.push(at);
      at = level.frame;
    }
  };
  for (let i = 0; i < n; i++) {
    if ((host[i] as number) >= 0) continue;
    const g = opts.flat ? ROOT_GROUP : (tree.groupOf[i] as number);
    const level = groupLevel[g] as number;
    nodeItem[i] = level >= 0 ? newItem(ITEM_NODE, i, level) : (rep[g] as number);
    place(nodeItem[i] as number);
  }
  for (let i = 0; i < n; i++) {
    const h = host[i] as number;
    if (h < 0) continue;
    const item = nodeItem[h] as number;
    nodeItem[i] = item;
    if ((items[item] as Item).kind === ITEM_NODE) (items[item] as Item).leaves.push(i);
  }
  const edges = visibleEdges(ix, host, nodeItem, items.length);
  for (const e of edges) lift(items, levels, e.from, e.to);
  return { items, levels, nodeItem, host, groupItem, edges };
}

/** The first consumer of each leaf that is folded beside it; -1 for every other node. */
function foldedHosts(ix: GraphIndex, fold: boolean): Int32Array {
  const host = new Int32Array(ix.count).fill(-1);
  if (!fold) return host;
  for (let i = 0; i < ix.count; i++) {
    if (ix.kind[i] !== KIND_LEAF || ix.inStart[i] === ix.inStart[i + 1]) continue;
    const h = ix.inSources[ix.inStart[i] as number] as number;
    if (ix.kind[h] !== KIND_LEAF) host[i] = h;
  }
  return host;
}

/** Graph edges between distinct items, merged per pair; edges into folded leaves are drawn as the fold. */
function visibleEdges(ix: GraphIndex, host: Int32Array, nodeItem: Int32Array, itemCount: number): VisibleEdge[] {
  const byPair = new Map<number, VisibleEdge>();
  const edges: VisibleEdge[] = [];
  for (let u = 0; u < ix.count; u++) {
    const from = nodeItem[u] as number;
    for (let k = ix.outStart[u] as number; k < (ix.outStart[u + 1] as number); k++) {
      const v = ix.outTargets[k] as number;
      if (v < 0 || (host[v] as number) >= 0) continue;
      const to = nodeItem[v] as number;
      if (to === from || to < 0 || from < 0) continue;
      const key = from * itemCount + to;
      const known = byPair.get(key);
      if (known) known.count++;
      else {
        const e = { from, to, count: 1 };
        byPair.set(key, e);
        edges.push(e);
      }
    }
  }
  return edges;
}

/** Record the edge in the level where both ends meet, each end replaced by its frame there. */
function lift(items: readonly Item[], levels: readonly Level[], from: number, to: number): void {
  let a = from;
  let b = to;
  for (;;) {
    const la = (items[a] as Item).level;
    const lb = (items[b] as Item).level;
    if (la === lb) break;
    const da = (levels[la] as Level).depth;
    const db = (levels[lb] as Level).depth;
    if (da >= db) a = (levels[la] as Level).frame;
    if (db >= da) b = (levels[lb] as Level).frame;
  }
  if (a === b) return;
  const level = levels[(items[a] as Item).level] as Level;
  level.edges.push((items[a] as Item).local, (items[b] as Item).local);
}

/** Groups to expand so that node i is shown as itself (and its consumer, for a folded leaf). */
export function groupsToShow(tree: GroupTree, visible: Visible, i: number): number[] {
  const wanted: number[] = [];
  for (const node of [i, visible.host[i] as number]) {
    if (node < 0) continue;
    for (let g = tree.groupOf[node] as number; g > ROOT_GROUP; g = (tree.groups[g] as Group).parent) wanted.push(g);
  }
  return wanted;
}

/** Items showing a node marked in `onPath` (nodes on a path from a root), and the frames around them. */
export function itemsOnPath(visible: Visible, onPath: Uint8Array): Uint8Array {
  const marked = new Uint8Array(visible.items.length);
  for (let i = 0; i < onPath.length; i++) {
    if (!onPath[i]) continue;
    for (let it = visible.nodeItem[i] as number; it >= 0 && !marked[it]; ) {
      marked[it] = 1;
      it = visible.levels[(visible.items[it] as Item).level]?.frame ?? -1;
    }
  }
  return marked;
}
