// Benchmark hooks, on purpose tiny and global. The canvas renderer records how long each frame's
// drawing took (and the time between consecutive frames, while frames follow each other, as
// during a pan or zoom); `window.__gradsight.frames()` returns the recent durations in ms for a
// Playwright benchmark (`frames(true)` also forgets them: the start of a measurement). Views mark their first complete paint of each graph with
// `data-painted="<n>"` on the .gradsight root and `performance.mark("gradsight:painted")`.

const KEEP = 600;
/** Frames further apart than this were not part of one continuous interaction. */
const CONTINUOUS_MS = 100;

const durations: number[] = [];
const intervals: number[] = [];
let lastFrameAt = Number.NEGATIVE_INFINITY;

export interface GradsightHooks {
  /** Recent canvas frame durations (ms spent drawing), oldest first; `clear`: forget them after. */
  frames(clear?: boolean): number[];
  /** Recent times between consecutive canvas frames (ms) during continuous redraws. */
  intervals(): number[];
  /** Forget the recorded frames (start of a measurement). */
  clear(): void;
}

function push(list: number[], v: number): void {
  list.push(v);
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
}

/** Record one drawn frame: `start` and `end` from performance.now(). */
export function recordFrame(start: number, end: number): void {
  push(durations, end - start);
  if (start - lastFrameAt < CONTINUOUS_MS) push(intervals, start - lastFrameAt);
  lastFrameAt = start;
}

function clear(): void {
  durations.length = 0;
  intervals.length = 0;
  lastFrameAt = Number.NEGATIVE_INFINITY;
}

export const hooks: GradsightHooks = {
  frames: (reset = false) => {
    const out = [...durations];
    if (reset) clear();
    return out;
  },
  intervals: () => [...intervals],
  clear,
};

/** Expose the hooks as window.__gradsight (once per page; every view shares them). */
export function installHooks(): void {
  if (typeof window === "undefined") return;
  const w = window as unknown as { __gradsight?: GradsightHooks };
  w.__gradsight ??= hooks;
}

/** The first complete paint of graph number `n` (counted per view): the attribute and a mark. */
export function markPainted(root: HTMLElement, n: number, nodes: number): void {
  root.setAttribute("data-painted", String(n));
  try {
    performance.mark("gradsight:painted", { detail: { graph: n, nodes } });
  } catch {
    // performance.mark without detail support, or no performance at all: the attribute is enough.
  }
}
