// Builds the big view's scene for one visible graph: item sizes, the levels that need a layout
// (layout-plan.ts, cached by signature), the layout job in the Worker or on the main thread
// (layout-client.ts), then the composed scene (scene.ts). Only the newest build counts. A build
// still running after PROGRESS_DELAY_MS shows its progress; "gradsight:layout" is measured with
// User Timing for benchmarks.

import { groupBoxSize, nodeItemSize, type Size } from "./big-label";
import { h, setText } from "./dom";
import { formatCount } from "./format";
import type { GraphIndex } from "./graph-index";
import type { Group, GroupTree } from "./groups";
import type { Direction } from "./layout";
import { LayoutClient } from "./layout-client";
import type { JobProgress, LevelLayout } from "./layout-job";
import { LevelCache, type Plan, planLayout } from "./layout-plan";
import { composeScene, type Scene } from "./scene";
import { ITEM_FRAME, ITEM_NODE, type Visible } from "./visible";

/** A layout still running after this long shows its progress. */
const PROGRESS_DELAY_MS = 150;
/**
 * Jobs up to this many items run on the main thread: a few milliseconds, less than a Worker
 * round trip (its first start parses the bundle: ~0.3 s measured in JupyterLab).
 */
export const MAIN_THREAD_ITEMS = 300;

export interface BuildRequest {
  ix: GraphIndex;
  tree: GroupTree;
  visible: Visible;
  flat: boolean;
  direction: Direction;
}

export interface BuildCallbacks {
  ready(scene: Scene): void;
  error(message: string): void;
}

/** The box of every item but frames (sized by the level inside them). */
export function itemSizes(ix: GraphIndex, tree: GroupTree, visible: Visible, flat: boolean): Size[] {
  return visible.items.map((item): Size => {
    if (item.kind === ITEM_NODE) return nodeItemSize(ix, item.ref, item.leaves, flat);
    if (item.kind === ITEM_FRAME) return { width: 0, height: 0 };
    const group = tree.groups[item.ref] as Group;
    return groupBoxSize(group, tree.groups[group.parent]);
  });
}

export class SceneBuilder {
  /** [data-gradsight="progress"]: shown while a slow layout runs. */
  readonly progress: HTMLElement;
  private readonly client = new LayoutClient();
  private readonly cache = new LevelCache(2000);
  private jobId = 0;
  private timer = 0;

  /** `busy`: the element that carries aria-busy while a layout runs. */
  constructor(private readonly busy: HTMLElement) {
    this.progress = h("div", { class: "gs-progress", "data-gradsight": "progress", role: "status", hidden: true });
  }

  /** Whether a layout is running (in the Worker). */
  get running(): boolean {
    return this.client.busy;
  }

  /** Build the scene of `req`; `cb.ready` comes at once when every level is cached (or without a Worker). */
  build(req: BuildRequest, cb: BuildCallbacks): void {
    const sizes = itemSizes(req.ix, req.tree, req.visible, req.flat);
    const plan = planLayout(req.visible, sizes, req.direction, this.cache, ++this.jobId);
    const finish = (fresh: LevelLayout[]): void => {
      const bySig = new Map<string, LevelLayout>();
      fresh.forEach((l, k) => {
        bySig.set(plan.jobSigs[k] as string, l);
        this.cache.set(plan.jobSigs[k] as string, l);
      });
      const layouts = plan.sigs.map((s) => bySig.get(s) ?? this.cache.get(s));
      cb.ready(composeScene(req.ix, req.visible, layouts, sizes, req.direction, req.flat));
    };
    if (!plan.job) {
      this.cancel();
      finish([]);
      return;
    }
    const here = plan.jobItems <= MAIN_THREAD_ITEMS;
    if (!here) this.start(plan);
    mark("start");
    this.client.run(
      plan.job,
      {
        progress: (p) => this.show(p, plan),
        done: (levels) => {
          this.stop();
          mark("end");
          finish(levels);
        },
        error: (message) => {
          this.stop();
          cb.error(`layout failed: ${message}`);
        },
      },
      here,
    );
  }

  cancel(): void {
    this.client.cancel();
    this.stop();
  }

  destroy(): void {
    this.stop();
    this.client.destroy();
  }

  private start(plan: Plan): void {
    this.stop();
    setText(this.progress, `Laying out ${formatCount(plan.jobItems)} items…`);
    this.timer = window.setTimeout(() => {
      this.progress.hidden = false;
    }, PROGRESS_DELAY_MS);
    this.busy.setAttribute("aria-busy", "true");
  }

  private show(p: JobProgress, plan: Plan): void {
    const level = p.levels > 1 ? ` (level ${p.done + 1} of ${p.levels})` : "";
    setText(this.progress, `Laying out ${formatCount(plan.jobItems)} items: ${p.phase}${level}…`);
  }

  private stop(): void {
    if (this.timer !== 0) window.clearTimeout(this.timer);
    this.timer = 0;
    this.progress.hidden = true;
    this.busy.removeAttribute("aria-busy");
  }
}

function mark(phase: "start" | "end"): void {
  try {
    performance.mark(`gradsight:layout-${phase}`);
    if (phase === "end") performance.measure("gradsight:layout", "gradsight:layout-start", "gradsight:layout-end");
  } catch {
    // No User Timing: nothing to record.
  }
}
