// The module hierarchy of a big graph, as groups: `encoder.layers.0.attn` lives in `encoder` ›
// `encoder.layers` › `encoder.layers.0` › `encoder.layers.0.attn` (TensorBoard and Model Explorer
// group by name scope the same way). Each group knows its direct nodes, its node count, its
// badges (largest gradient norm inside, NaN / Inf present) and its op-name multiset, so siblings
// that are the same block repeated (`layers.0` … `layers.11`) are recognized. Nodes without a
// module are shown with their neighbours' module when they sit inside one (placement.ts). Pure data.

import { type GraphIndex, isNonFinite } from "./graph-index";
import { placeLoose } from "./placement";

export interface Repeat {
  /** How many siblings are this same block. */
  count: number;
  /** This one's position among them (0-based, in the outline's order). */
  index: number;
}

export interface Group {
  /** Module path; "" for the root (the whole graph). */
  path: string;
  /** The last segment of the path: what the group is called inside its parent. */
  name: string;
  parent: number;
  depth: number;
  /** Child groups in natural order (2 before 10). */
  children: number[];
  /** Nodes whose module is exactly this path (or placed here, having none), in graph order. */
  nodes: number[];
  /** Nodes inside at any depth. */
  total: number;
  /** Largest finite gradient norm inside; NaN when none is known. */
  maxNorm: number;
  /** Nodes inside whose gradients held NaN or Inf. */
  nonfinite: number;
  /** The op-name multiset of everything inside: equal for identical blocks. */
  signature: string;
  /** Set when siblings are the same block: `layers.3` is 4 of 12. */
  repeat: Repeat | null;
  /** The largest set of identical child blocks (0 or ≥ 2): the "×12 identical blocks" badge. */
  series: number;
}

export interface GroupTree {
  /** Parents before children; groups[0] is the root. */
  groups: Group[];
  /** The group each node is shown in: its module, or for a node without one, placement.ts's choice. */
  groupOf: Int32Array;
  /** Nodes without a module shown inside a group (placement.ts). */
  placed: Uint8Array;
  byPath: ReadonlyMap<string, number>;
}

export const ROOT_GROUP = 0;

const collator = new Intl.Collator("en", { numeric: true });

export function buildGroups(ix: GraphIndex): GroupTree {
  const groups: Group[] = [blank("", "", -1, 0)];
  const byPath = new Map<string, number>([["", ROOT_GROUP]]);
  const ensure = (path: string): number => {
    const known = byPath.get(path);
    if (known !== undefined) return known;
    const cut = path.lastIndexOf(".");
    const parent = cut < 0 ? ROOT_GROUP : ensure(path.slice(0, cut));
    const g = groups.length;
    groups.push(blank(path, path.slice(cut + 1), parent, (groups[parent] as Group).depth + 1));
    (groups[parent] as Group).children.push(g);
    byPath.set(path, g);
    return g;
  };
  const groupOf = new Int32Array(ix.count);
  for (let i = 0; i < ix.count; i++) {
    const module = ix.modules[i];
    groupOf[i] = module ? ensure(module) : ROOT_GROUP;
  }
  const placed = placeLoose(ix, groupOf, groups, ROOT_GROUP);
  for (let i = 0; i < ix.count; i++) (groups[groupOf[i] as number] as Group).nodes.push(i);
  summarize(ix, groups);
  for (const g of groups) {
    g.children.sort((a, b) => collator.compare((groups[a] as Group).name, (groups[b] as Group).name));
    markRepeats(groups, g);
  }
  return { groups, groupOf, placed, byPath };
}

function blank(path: string, name: string, parent: number, depth: number): Group {
  return {
    path,
    name,
    parent,
    depth,
    children: [],
    nodes: [],
    total: 0,
    maxNorm: Number.NaN,
    nonfinite: 0,
    signature: "",
    repeat: null,
    series: 0,
  };
}

/** Counts, badges and signatures, children before parents (groups are created parents first). */
function summarize(ix: GraphIndex, groups: Group[]): void {
  const names: Map<string, number>[] = groups.map(() => new Map());
  for (let g = groups.length - 1; g >= 0; g--) {
    const group = groups[g] as Group;
    const bag = names[g] as Map<string, number>;
    for (const i of group.nodes) {
      group.total++;
      const norm = ix.gradNorm[i] as number;
      if (Number.isFinite(norm) && !(norm <= group.maxNorm)) group.maxNorm = norm;
      if (isNonFinite(ix, i)) group.nonfinite++;
      const name = ix.names[i] as string;
      bag.set(name, (bag.get(name) ?? 0) + 1);
    }
    group.signature = [...bag].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).join(";");
    if (group.parent < 0) continue;
    const parent = groups[group.parent] as Group;
    parent.total += group.total;
    parent.nonfinite += group.nonfinite;
    if (Number.isFinite(group.maxNorm) && !(group.maxNorm <= parent.maxNorm)) parent.maxNorm = group.maxNorm;
    const up = names[group.parent] as Map<string, number>;
    for (const [name, count] of bag) up.set(name, (up.get(name) ?? 0) + count);
  }
}

/** Siblings with the same op-name multiset (and more than one node) are one block repeated. */
function markRepeats(groups: Group[], parent: Group): void {
  const classes = new Map<string, number[]>();
  for (const c of parent.children) {
    const child = groups[c] as Group;
    if (child.total < 2) continue;
    const list = classes.get(child.signature);
    if (list) list.push(c);
    else classes.set(child.signature, [c]);
  }
  for (const members of classes.values()) {
    if (members.length < 2) continue;
    parent.series = Math.max(parent.series, members.length);
    members.forEach((c, index) => {
      (groups[c] as Group).repeat = { count: members.length, index };
    });
  }
}

/** The groups from the root's child down to `g` (the ones to expand to show g's nodes). */
export function ancestry(tree: GroupTree, g: number): number[] {
  const chain: number[] = [];
  for (let at = g; at > ROOT_GROUP; at = (tree.groups[at] as Group).parent) chain.push(at);
  return chain.reverse();
}
