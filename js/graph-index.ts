// A columnar index of one graph for the big-graph view: ids, names, modules, leaf and variable
// names, shape text, kind, flags and grad norms per node, edges in CSR form both ways. Built
// straight from a binary skeleton (skeleton.ts) or from JSON nodes, so grouping, layout, search
// and drawing never touch 50,000 WireNode objects or the DOM.

import { formatShape } from "./format";
import { nonFinite } from "./node-label";
import {
  FLAG_EXECUTED,
  FLAG_EXECUTED_KNOWN,
  FLAG_NONFINITE,
  KIND_NAMES,
  OPAQUE_NAMES,
  OPAQUE_SHIFT,
  type Skeleton,
  text,
} from "./skeleton";
import type { NodeKind, OpaqueKind, WireGraph, WireNode } from "./wire";

export const KIND_LEAF = 1;
export const KIND_ROOT = 2;
export const KIND_OPAQUE = 3;

export interface GraphIndex {
  count: number;
  ids: readonly string[];
  names: readonly string[];
  modules: readonly (string | null)[];
  /** A leaf's tensor name ("layer1.weight"), else null. */
  leaves: readonly (string | null)[];
  variables: readonly (string | null)[];
  /** First output shape as Python formats it, "(16, 10)". */
  shapes: readonly (string | null)[];
  kind: Uint8Array;
  flags: Uint8Array;
  /** NaN: unknown. */
  gradNorm: Float32Array;
  /** `next` edges: targets of node i are outTargets[outStart[i] .. outStart[i + 1]], -1 = None. */
  outStart: Uint32Array;
  outTargets: Int32Array;
  /** Distinct consumers (parents toward the roots) of node i, in node order. */
  inStart: Uint32Array;
  inSources: Int32Array;
  roots: readonly number[];
  indexOf: ReadonlyMap<string, number>;
}

export function indexGraph(graph: WireGraph): GraphIndex {
  return graph.skeleton ? indexSkeleton(graph.skeleton, graph.roots) : indexNodes(graph.nodes, graph.roots);
}

export function indexSkeleton(sk: Skeleton, roots: readonly string[]): GraphIndex {
  const n = sk.count;
  const col = (c: Int32Array): (string | null)[] => Array.from(c, (v) => text(sk, v));
  return finish({
    count: n,
    ids: sk.ids,
    names: Array.from(sk.name, (v) => sk.strings[v] as string),
    modules: col(sk.module),
    leaves: col(sk.leaf),
    variables: col(sk.variable),
    shapes: col(sk.shape),
    kind: sk.kind,
    flags: sk.flags,
    gradNorm: sk.gradNorm,
    outStart: sk.edgeOffsets,
    outTargets: sk.edgeTargets,
    rootIds: roots,
  });
}

export function indexNodes(nodes: readonly WireNode[], roots: readonly string[]): GraphIndex {
  const n = nodes.length;
  const at = new Map<string, number>();
  nodes.forEach((node, i) => {
    at.set(node.id, i);
  });
  const kind = new Uint8Array(n);
  const flags = new Uint8Array(n);
  const gradNorm = new Float32Array(n);
  const outStart = new Uint32Array(n + 1);
  const targets: number[] = [];
  nodes.forEach((node, i) => {
    kind[i] = KIND_NAMES.indexOf(node.kind);
    let f = OPAQUE_NAMES.indexOf(node.opaque_kind) << OPAQUE_SHIFT;
    if (node.executed !== null) f |= FLAG_EXECUTED_KNOWN | (node.executed ? FLAG_EXECUTED : 0);
    if (nonFinite(node).present) f |= FLAG_NONFINITE;
    flags[i] = f;
    gradNorm[i] = node.grad_norm ?? Number.NaN;
    for (const [t] of node.next) targets.push(t === null ? -1 : (at.get(t) ?? -1));
    outStart[i + 1] = targets.length;
  });
  return finish({
    count: n,
    ids: nodes.map((x) => x.id),
    names: nodes.map((x) => x.name),
    modules: nodes.map((x) => x.module),
    leaves: nodes.map((x) => x.leaf?.name ?? null),
    variables: nodes.map((x) => x.variable),
    shapes: nodes.map((x) =>
      x.outputs[0] ? formatShape(x.outputs[0].shape) : x.leaf ? formatShape(x.leaf.shape) : null,
    ),
    kind,
    flags,
    gradNorm,
    outStart,
    outTargets: Int32Array.from(targets),
    rootIds: roots,
  });
}

type Columns = Omit<GraphIndex, "inStart" | "inSources" | "roots" | "indexOf"> & { rootIds: readonly string[] };

/** Add the reverse edges (distinct consumers), the id lookup and the root indices. */
function finish(c: Columns): GraphIndex {
  const n = c.count;
  const indexOf = new Map<string, number>();
  for (let i = 0; i < n; i++) indexOf.set(c.ids[i] as string, i);
  const inStart = new Uint32Array(n + 1);
  const counted = new Int32Array(n).fill(-1);
  // Two passes over the edges: count distinct consumers per target, then fill them in node order.
  for (let i = 0; i < n; i++) {
    for (let k = c.outStart[i] as number; k < (c.outStart[i + 1] as number); k++) {
      const t = c.outTargets[k] as number;
      if (t < 0 || counted[t] === i) continue;
      counted[t] = i;
      inStart[t + 1] = (inStart[t + 1] as number) + 1;
    }
  }
  for (let i = 0; i < n; i++) inStart[i + 1] = (inStart[i + 1] as number) + (inStart[i] as number);
  const inSources = new Int32Array(inStart[n] as number);
  const fill = inStart.slice(0, n);
  counted.fill(-1);
  for (let i = 0; i < n; i++) {
    for (let k = c.outStart[i] as number; k < (c.outStart[i + 1] as number); k++) {
      const t = c.outTargets[k] as number;
      if (t < 0 || counted[t] === i) continue;
      counted[t] = i;
      inSources[fill[t] as number] = i;
      fill[t] = (fill[t] as number) + 1;
    }
  }
  const roots: number[] = [];
  for (const r of c.rootIds) {
    const i = indexOf.get(r);
    if (i !== undefined) roots.push(i);
  }
  const { rootIds: _, ...rest } = c;
  return { ...rest, inStart, inSources, roots, indexOf };
}

export function kindName(ix: GraphIndex, i: number): NodeKind {
  return KIND_NAMES[ix.kind[i] as number] as NodeKind;
}

export function opaqueKind(ix: GraphIndex, i: number): OpaqueKind | null {
  return OPAQUE_NAMES[(ix.flags[i] as number) >> OPAQUE_SHIFT] ?? null;
}

/** The name a person knows the node by: a leaf's tensor name, else the op name. */
export function nodeDisplayName(ix: GraphIndex, i: number): string {
  return ix.leaves[i] ?? (ix.names[i] as string);
}

export function isNonFinite(ix: GraphIndex, i: number): boolean {
  return ((ix.flags[i] as number) & FLAG_NONFINITE) !== 0;
}

/** Did backward run the node? null: unknown. */
export function executed(ix: GraphIndex, i: number): boolean | null {
  const f = ix.flags[i] as number;
  return f & FLAG_EXECUTED_KNOWN ? (f & FLAG_EXECUTED) !== 0 : null;
}

export function gradNorm(ix: GraphIndex, i: number): number | null {
  const v = ix.gradNorm[i] as number;
  return Number.isFinite(v) ? v : null;
}

/**
 * Everything on a path from a root to `target`: its ancestors (every node of a backward graph is
 * reachable from a root) and itself. Iterative BFS toward the roots; a mark per node.
 */
export function pathToRoots(ix: GraphIndex, target: number): Uint8Array {
  const on = new Uint8Array(ix.count);
  if (target < 0 || target >= ix.count) return on;
  const queue = new Int32Array(ix.count);
  let head = 0;
  let tail = 0;
  on[target] = 1;
  queue[tail++] = target;
  while (head < tail) {
    const v = queue[head++] as number;
    for (let k = ix.inStart[v] as number; k < (ix.inStart[v + 1] as number); k++) {
      const p = ix.inSources[k] as number;
      if (on[p]) continue;
      on[p] = 1;
      queue[tail++] = p;
    }
  }
  return on;
}
