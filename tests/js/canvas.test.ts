// The canvas renderer's pure parts: the spatial grid (culling and click picking), level-of-detail
// decisions, and one drawn frame checked through a recording 2D context (jsdom has none): text only
// at readable zoom, one path per style rather than one per node, and nothing outside the viewport.

import { nodeItemSize, type Size } from "../../js/big-label";
import { type DrawInput, drawFrame } from "../../js/canvas-draw";
import { indexNodes } from "../../js/graph-index";
import { buildGroups } from "../../js/groups";
import { runLayoutJob } from "../../js/layout-job";
import { LevelCache, planLayout } from "../../js/layout-plan";
import { ARROW_ZOOM, CURVE_BUDGET, lodFor, STROKE_ZOOM, TEXT_ZOOM, titleFits } from "../../js/lod";
import { DEFAULT_PALETTE } from "../../js/palette";
import { composeScene } from "../../js/scene";
import { SpatialGrid } from "../../js/spatial";
import { computeVisible } from "../../js/visible";
import { node } from "./fixtures";

describe("spatial grid", () => {
  const boxes = (list: [number, number, number, number][]) =>
    new SpatialGrid(
      Float64Array.from(list.map((b) => b[0])),
      Float64Array.from(list.map((b) => b[1])),
      Float64Array.from(list.map((b) => b[2])),
      Float64Array.from(list.map((b) => b[3])),
      1000,
      1000,
    );

  it("picks the box under a point, the innermost when boxes nest, and nothing in empty space", () => {
    const g = boxes([
      [0, 0, 500, 500], // a frame-sized box
      [100, 100, 80, 30],
      [300, 300, 80, 30],
      [900, 900, 50, 50],
    ]);
    expect(g.pick(120, 110)).toBe(1);
    expect(g.pick(310, 320)).toBe(2);
    expect(g.pick(50, 50)).toBe(0);
    expect(g.pick(925, 925)).toBe(3);
    expect(g.pick(700, 100)).toBe(-1);
    // Slack reaches a box just beside the point.
    expect(g.pick(182, 110)).toBe(0);
    expect(g.pick(183, 110, 4)).toBe(1);
  });

  it("returns each box overlapping a rectangle once, however many cells it spans", () => {
    const g = boxes([
      [0, 0, 1000, 10],
      [10, 10, 5, 5],
      [600, 600, 5, 5],
    ]);
    const seen: number[] = [];
    g.query(0, 0, 400, 400, (id) => seen.push(id));
    expect(seen.sort()).toEqual([0, 1]);
  });

  it("indexes 50,000 boxes and picks among them", () => {
    const n = 50_000;
    const x = new Float64Array(n);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      x[i] = (i % 250) * 100;
      y[i] = Math.floor(i / 250) * 50;
    }
    const g = new SpatialGrid(x, y, new Float64Array(n).fill(80), new Float64Array(n).fill(30), 25_000, 10_000);
    expect(g.pick(4_210, 3_010)).toBe(60 * 250 + 42);
    let count = 0;
    g.query(0, 0, 990, 490, () => count++);
    expect(count).toBe(100);
  });

  it("leaves out boxes that were not placed (NaN)", () => {
    const g = new SpatialGrid(
      Float64Array.from([Number.NaN, 5]),
      Float64Array.from([0, 5]),
      Float64Array.from([10, 10]),
      Float64Array.from([10, 10]),
      100,
      100,
    );
    expect(g.pick(1, 1)).toBe(-1);
    expect(g.pick(6, 6)).toBe(1);
  });
});

describe("level of detail", () => {
  it("drops text, then outlines, then curves as the view zooms out", () => {
    expect(lodFor(1)).toMatchObject({
      names: true,
      details: true,
      strokes: true,
      rounded: true,
      curves: true,
      arrows: true,
    });
    expect(lodFor(TEXT_ZOOM - 0.01)).toMatchObject({ names: false, details: false, strokes: true });
    expect(lodFor(TEXT_ZOOM)).toMatchObject({ names: true, details: false });
    expect(lodFor(ARROW_ZOOM - 0.01).arrows).toBe(false);
    expect(lodFor(STROKE_ZOOM - 0.01)).toMatchObject({ strokes: false, rounded: false, curves: false });
  });

  it("draws straight edges when too many are in view, even zoomed in", () => {
    expect(lodFor(1, CURVE_BUDGET).curves).toBe(true);
    expect(lodFor(1, CURVE_BUDGET + 1).curves).toBe(false);
  });

  it("titles a group only when its box is wide enough on screen", () => {
    expect(titleFits(200, 0.1)).toBe(false);
    expect(titleFits(200, 0.5)).toBe(true);
  });
});

/** A 2D context that records method calls (jsdom has no canvas). */
function recorder() {
  const calls: string[] = [];
  const ctx = new Proxy({} as Record<string | symbol, unknown>, {
    get(target, prop) {
      if (prop in target) return target[prop];
      return (..._args: unknown[]) => {
        calls.push(String(prop));
      };
    },
    set(target, prop, value) {
      target[prop] = value;
      return true;
    },
  });
  return {
    ctx: ctx as unknown as CanvasRenderingContext2D,
    calls,
    count: (name: string) => calls.filter((c) => c === name).length,
  };
}

function flatScene(n: number) {
  const nodes = Array.from({ length: n }, (_, i) =>
    node(`MulBackward0#${i}`, { kind: i === 0 ? "root" : "op", next: i + 1 < n ? [[`MulBackward0#${i + 1}`, 0]] : [] }),
  );
  const ix = indexNodes(nodes, ["MulBackward0#0"]);
  const tree = buildGroups(ix);
  const visible = computeVisible(ix, tree, { flat: true, foldLeaves: true, expanded: new Set() });
  const sizes: Size[] = visible.items.map((it) => nodeItemSize(ix, it.ref, it.leaves, true));
  const plan = planLayout(visible, sizes, "LR", new LevelCache(), 1);
  const levels = plan.job ? runLayoutJob(plan.job) : [];
  const scene = composeScene(ix, visible, levels, sizes, "LR");
  return { ix, tree, visible, scene };
}

function input(s: ReturnType<typeof flatScene>, k: number): DrawInput {
  return {
    ...s,
    flat: true,
    t: { x: 0, y: 0, k },
    width: 800,
    height: 520,
    dpr: 2,
    palette: DEFAULT_PALETTE,
    marks: { selected: 3, hover: -1, cursor: -1, pathItems: null, added: new Set(), nonfinite: new Set(), maxNorm: 0 },
  };
}

describe("a drawn frame", () => {
  const s = flatScene(2000);

  it("draws everything zoomed out without text, in a handful of batched paths", () => {
    const r = recorder();
    const k = 800 / s.scene.width;
    const stats = drawFrame(r.ctx, input(s, k));
    expect(stats.targets).toBe(2000);
    expect(r.count("fillText")).toBe(0);
    expect(r.count("fill")).toBeLessThan(12);
    expect(r.count("rect")).toBeGreaterThanOrEqual(2000);
  });

  it("writes labels at readable zoom, only for the nodes in view", () => {
    const r = recorder();
    const stats = drawFrame(r.ctx, input(s, 1));
    expect(stats.targets).toBeGreaterThan(0);
    expect(stats.targets).toBeLessThan(40);
    expect(r.count("fillText")).toBeGreaterThanOrEqual(stats.targets);
    expect(r.count("fillText")).toBeLessThanOrEqual(3 * stats.targets);
    expect(r.count("bezierCurveTo")).toBeGreaterThan(0);
  });

  it("scales by zoom × devicePixelRatio, so text is crisp", () => {
    const transforms: number[][] = [];
    const r = recorder();
    const ctx = new Proxy(r.ctx as unknown as Record<string, unknown>, {
      get(target, prop) {
        if (prop === "setTransform") return (...a: number[]) => transforms.push(a);
        return target[prop as string];
      },
    }) as unknown as CanvasRenderingContext2D;
    drawFrame(ctx, { ...input(s, 0.75), t: { x: 10, y: 20, k: 0.75 } });
    expect(transforms.at(-1)).toEqual([1.5, 0, 0, 1.5, 20, 40]);
  });
});
