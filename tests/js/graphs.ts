// Graph generators for the layout tests: long chains and deterministic backward-shaped DAGs
// (a deep gradient chain, parameter leaves, short residual fan-ins, rare long skip connections;
// the shape of research/widget/layoutbench/gen.mjs, with edges reversed to follow `next`).

import type { LayoutInput } from "../../js/layout";

/** `n` nodes, each pointing at the next one: n0 → n1 → … (n0 is the root). */
export function chain(n: number): LayoutInput[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `n${i}`,
    width: 120,
    height: 30,
    next: i + 1 < n ? [`n${i + 1}`] : [],
  }));
}

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A backward-shaped DAG of `n` nodes. Forward node i is built from earlier nodes; its grad_fn's
 * `next` points back at them, so the root is the last node and the leaves are the parameters.
 */
export function backwardDag(n: number, seed = 1): LayoutInput[] {
  const rnd = mulberry32(seed);
  const pick = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));
  const next: string[][] = Array.from({ length: n }, () => []);
  const outdeg = new Uint8Array(n);
  const seen = new Set<number>();
  const add = (from: number, to: number): boolean => {
    // forward edge from → to becomes backward edge to → from
    if (from < 0 || from >= to || (outdeg[from] as number) >= 3 || (next[to] as string[]).length >= 3) return false;
    if (seen.has(from * n + to)) return false;
    seen.add(from * n + to);
    (next[to] as string[]).push(`n${from}`);
    outdeg[from] = (outdeg[from] as number) + 1;
    return true;
  };
  const main = [0];
  let pending: number[] = [];
  for (let i = 1; i < n; i++) {
    if (rnd() < 0.2) {
      pending.push(i);
      continue;
    }
    const c = main.length;
    for (let k = c - 1; k >= Math.max(0, c - 4); k--) if (add(main[k] as number, i)) break;
    pending = pending.filter((leaf) => !add(leaf, i));
    if (rnd() < 0.25 && c > 2) add(main[pick(Math.max(0, c - 8), c - 2)] as number, i);
    if (rnd() < 0.01 && c > 100) add(main[pick(Math.max(0, c - 1000), c - 100)] as number, i);
    main.push(i);
  }
  // Roots first, like Python's node order.
  return Array.from({ length: n }, (_, k) => {
    const i = n - 1 - k;
    return { id: `n${i}`, width: 90 + (i % 5) * 12, height: 30, next: next[i] as string[] };
  });
}
