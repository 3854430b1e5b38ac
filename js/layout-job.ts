// One layout job of the big-graph view: the levels that changed (an expanded group's items, or the
// root level), deepest first, each laid out by the layered layout of layout.ts. A frame's size is
// its level's size plus padding, so a level can refer to a level laid out earlier in the same job.
// Pure and transferable (typed arrays only): the Worker (layout-worker.ts) and the main-thread
// fallback (layout-client.ts) run exactly this code.

import { computeLayout, type Direction, type LayoutInput, type LayoutPhase } from "./layout";

export interface JobLevel {
  widths: Float64Array;
  heights: Float64Array;
  /** For a frame: the index (earlier in the job) of the level it holds, else -1. */
  subs: Int32Array;
  /** Pairs of item positions; repeated pairs are drawn as one edge. */
  edges: Int32Array;
}

export interface LayoutJob {
  id: number;
  direction: Direction;
  levels: JobLevel[];
  /** Frame padding around a level, and the frame's header height above it. */
  pad: number;
  header: number;
}

export interface LevelLayout {
  width: number;
  height: number;
  /** Top-left and size of each item, relative to the level's top-left. */
  x: Float64Array;
  y: Float64Array;
  w: Float64Array;
  h: Float64Array;
  layer: Int32Array;
  order: Int32Array;
  /** Edge k joins items edgeFrom[k] → edgeTo[k] through points pointStart[k] .. pointStart[k + 1]. */
  edgeFrom: Int32Array;
  edgeTo: Int32Array;
  pointStart: Int32Array;
  /** x, y pairs. */
  points: Float64Array;
}

export interface JobProgress {
  /** Levels finished, of `levels`. */
  done: number;
  levels: number;
  /** Items in the level being laid out. */
  items: number;
  phase: LayoutPhase;
}

export function frameSize(level: { width: number; height: number }, pad: number, header: number) {
  return { width: level.width + 2 * pad, height: level.height + header + 2 * pad };
}

export function runLayoutJob(job: LayoutJob, progress?: (p: JobProgress) => void): LevelLayout[] {
  const out: LevelLayout[] = [];
  job.levels.forEach((level, li) => {
    const n = level.widths.length;
    const w = Float64Array.from(level.widths);
    const h = Float64Array.from(level.heights);
    for (let k = 0; k < n; k++) {
      const sub = level.subs[k] as number;
      if (sub < 0) continue;
      const inner = out[sub];
      if (!inner) throw new Error(`layout job: level ${li} refers to level ${sub}, not laid out before it`);
      const size = frameSize(inner, job.pad, job.header);
      w[k] = size.width;
      h[k] = size.height;
    }
    const next: string[][] = Array.from({ length: n }, () => []);
    for (let e = 0; e + 1 < level.edges.length; e += 2) {
      (next[level.edges[e] as number] as string[]).push(String(level.edges[e + 1]));
    }
    const input: LayoutInput[] = next.map((targets, k) => ({
      id: String(k),
      width: w[k] as number,
      height: h[k] as number,
      next: targets,
    }));
    const onPhase = progress
      ? (phase: LayoutPhase) => progress({ done: li, levels: job.levels.length, items: n, phase })
      : undefined;
    const layout = computeLayout(input, { direction: job.direction, align: "start", onPhase });
    const result: LevelLayout = {
      width: layout.width,
      height: layout.height,
      x: new Float64Array(n),
      y: new Float64Array(n),
      w,
      h,
      layer: new Int32Array(n),
      order: new Int32Array(n),
      edgeFrom: new Int32Array(layout.edges.length),
      edgeTo: new Int32Array(layout.edges.length),
      pointStart: new Int32Array(layout.edges.length + 1),
      points: new Float64Array(2 * layout.edges.reduce((s, e) => s + e.points.length, 0)),
    };
    layout.nodes.forEach((p, k) => {
      result.x[k] = p.cx - p.width / 2;
      result.y[k] = p.cy - p.height / 2;
      result.layer[k] = p.layer;
      result.order[k] = p.order;
    });
    let at = 0;
    layout.edges.forEach((e, k) => {
      result.edgeFrom[k] = Number(e.from);
      result.edgeTo[k] = Number(e.to);
      result.pointStart[k] = at / 2;
      for (const p of e.points) {
        result.points[at++] = p.x;
        result.points[at++] = p.y;
      }
    });
    result.pointStart[layout.edges.length] = at / 2;
    out.push(result);
  });
  return out;
}

/** The buffers of a result, to transfer instead of copy when posting it from the Worker. */
export function transferables(levels: readonly LevelLayout[]): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  for (const l of levels) {
    for (const a of [l.x, l.y, l.w, l.h, l.layer, l.order, l.edgeFrom, l.edgeTo, l.pointStart, l.points]) {
      buffers.push(a.buffer as ArrayBuffer);
    }
  }
  return buffers;
}

/** What the Worker posts back for job `id`. */
export type WorkerReply =
  | { type: "progress"; id: number; progress: JobProgress }
  | { type: "done"; id: number; levels: LevelLayout[] }
  | { type: "error"; id: number; message: string };
