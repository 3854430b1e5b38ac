// Which levels of the visible graph need a new layout, and the job that lays them out. A level's
// layout depends only on its item sizes, its edges and the direction, so its signature (a hash of
// those, with a frame standing for the signature of the level it holds) keys a cache: collapsing
// a group brings back exactly the positions from before, a live update with the same structure
// lays out nothing, and identical repeated blocks share one layout.

import { FRAME_HEADER, FRAME_PAD, type Size } from "./big-label";
import type { Direction } from "./layout";
import { frameSize, type JobLevel, type LayoutJob, type LevelLayout } from "./layout-job";
import { ITEM_FRAME, type Item, type Level, type Visible } from "./visible";

/** A 64-bit hash in two 32-bit lanes (murmur-style mixing): enough to tell level shapes apart. */
class Hash {
  private a = 0x811c9dc5;
  private b = 0x01000193;

  num(v: number): this {
    // Sizes are integers or halves in practice: keep two decimals.
    const x = Math.round(v * 100) | 0;
    this.a = Math.imul(this.a ^ x, 0x85ebca6b);
    this.a ^= this.a >>> 13;
    this.b = Math.imul(this.b ^ x, 0xc2b2ae35) + 0x27d4eb2f;
    this.b ^= this.b >>> 16;
    return this;
  }

  str(s: string): this {
    this.num(s.length);
    for (let i = 0; i < s.length; i++) this.num(s.charCodeAt(i));
    return this;
  }

  digest(): string {
    return `${(this.a >>> 0).toString(36)}.${(this.b >>> 0).toString(36)}`;
  }
}

/** Level layouts by signature, the oldest dropped past `limit`. */
export class LevelCache {
  private readonly map = new Map<string, LevelLayout>();

  constructor(private readonly limit = 400) {}

  get(sig: string): LevelLayout | undefined {
    const hit = this.map.get(sig);
    if (hit) {
      this.map.delete(sig);
      this.map.set(sig, hit);
    }
    return hit;
  }

  set(sig: string, layout: LevelLayout): void {
    this.map.delete(sig);
    this.map.set(sig, layout);
    while (this.map.size > this.limit) {
      const oldest = this.map.keys().next().value;
      if (oldest === undefined) break;
      this.map.delete(oldest);
    }
  }

  get size(): number {
    return this.map.size;
  }
}

export interface Plan {
  /** Signature of each visible level. */
  sigs: string[];
  /** The job for the levels the cache lacks (null: everything is cached). */
  job: LayoutJob | null;
  /** Signatures of the job's levels, in job order. */
  jobSigs: string[];
  /** Items in the job (for progress text). */
  jobItems: number;
}

/** `sizes[item]`: the box of every item but frames (frames are sized by their level). */
export function planLayout(
  visible: Visible,
  sizes: readonly Size[],
  direction: Direction,
  cache: LevelCache,
  id: number,
): Plan {
  const { items, levels } = visible;
  const sigs = new Array<string>(levels.length).fill("");
  const levelOfFrame = new Map<number, number>();
  levels.forEach((l, li) => {
    if (l.frame >= 0) levelOfFrame.set(l.frame, li);
  });
  // Children levels come after their parents: walk backwards for bottom-up signatures.
  for (let li = levels.length - 1; li >= 0; li--) {
    const level = levels[li] as Level;
    const h = new Hash().str(direction).num(level.items.length);
    for (const it of level.items) {
      const item = items[it] as Item;
      if (item.kind === ITEM_FRAME) h.str(sigs[levelOfFrame.get(it) as number] as string);
      else h.num((sizes[it] as Size).width).num((sizes[it] as Size).height);
    }
    h.num(level.edges.length);
    for (const v of level.edges) h.num(v);
    sigs[li] = h.digest();
  }
  const jobLevels: JobLevel[] = [];
  const jobSigs: string[] = [];
  const inJob = new Map<string, number>();
  let jobItems = 0;
  for (let li = levels.length - 1; li >= 0; li--) {
    const sig = sigs[li] as string;
    const level = levels[li] as Level;
    if (level.items.length === 0 || cache.get(sig) || inJob.has(sig)) continue;
    const n = level.items.length;
    const job: JobLevel = {
      widths: new Float64Array(n),
      heights: new Float64Array(n),
      subs: new Int32Array(n).fill(-1),
      edges: Int32Array.from(level.edges),
    };
    level.items.forEach((it, k) => {
      const item = items[it] as Item;
      if (item.kind !== ITEM_FRAME) {
        job.widths[k] = (sizes[it] as Size).width;
        job.heights[k] = (sizes[it] as Size).height;
        return;
      }
      const sub = sigs[levelOfFrame.get(it) as number] as string;
      const cached = cache.get(sub);
      if (cached) {
        const size = frameSize(cached, FRAME_PAD, FRAME_HEADER);
        job.widths[k] = size.width;
        job.heights[k] = size.height;
      } else job.subs[k] = inJob.get(sub) ?? -1;
    });
    inJob.set(sig, jobLevels.length);
    jobLevels.push(job);
    jobSigs.push(sig);
    jobItems += n;
  }
  const job =
    jobLevels.length === 0 ? null : { id, direction, levels: jobLevels, pad: FRAME_PAD, header: FRAME_HEADER };
  return { sigs, job, jobSigs, jobItems };
}
