// Layout: layering correctness, no overlap, directions as transforms of one layout, and the deep
// graphs that overflow recursive layouts (a 20,000-node chain and backward-shaped DAG).

import { computeLayout, dummyBudget, type Layout, type LayoutInput, longestPathLayers } from "../../js/layout";
import { backwardDag, chain } from "./graphs";

function byId(layout: Layout) {
  return new Map(layout.nodes.map((n) => [n.id, n]));
}

function expectLayered(input: LayoutInput[], layout: Layout): void {
  const placed = byId(layout);
  for (const n of input) {
    for (const t of n.next) {
      const from = placed.get(n.id);
      const to = placed.get(t);
      if (!from || !to) throw new Error(`missing ${n.id} or ${t}`);
      expect(to.layer).toBeGreaterThan(from.layer);
    }
  }
}

function expectNoOverlap(layout: Layout): void {
  const layers = new Map<number, { lo: number; hi: number }[]>();
  for (const n of layout.nodes) {
    const list = layers.get(n.layer) ?? [];
    list.push({ lo: n.cx - n.width / 2, hi: n.cx + n.width / 2 });
    layers.set(n.layer, list);
  }
  for (const list of layers.values()) {
    list.sort((a, b) => a.lo - b.lo);
    for (let i = 1; i < list.length; i++) expect(list[i]?.lo).toBeGreaterThanOrEqual((list[i - 1]?.hi ?? 0) - 1e-6);
  }
}

describe("layering", () => {
  it("puts roots at layer 0 and every edge from a lower to a higher layer", () => {
    const input = backwardDag(1500, 7);
    const layout = computeLayout(input);
    expectLayered(input, layout);
    expect(byId(layout).get("n1499")?.layer).toBe(0);
    expectNoOverlap(layout);
  });

  it("is the longest path from the roots", () => {
    // a → b → c and a → c: c must sit below b, not beside it.
    const layers = longestPathLayers(3, [
      { s: 0, t: 1, count: 1 },
      { s: 1, t: 2, count: 1 },
      { s: 0, t: 2, count: 1 },
    ]);
    expect([...layers]).toEqual([0, 1, 2]);
  });

  it("terminates on a cycle (impossible in autograd, possible in bad data)", () => {
    const input: LayoutInput[] = [
      { id: "a", width: 50, height: 20, next: ["b"] },
      { id: "b", width: 50, height: 20, next: ["c"] },
      { id: "c", width: 50, height: 20, next: ["b"] },
    ];
    const layout = computeLayout(input);
    expect(layout.nodes).toHaveLength(3);
    expect(layout.edges).toHaveLength(3);
  });

  it("ignores unknown targets and self-loops, merges repeated edges", () => {
    const layout = computeLayout([
      { id: "mul", width: 60, height: 20, next: ["x", "x", "mul", "ghost"] },
      { id: "x", width: 60, height: 20, next: [] },
    ]);
    expect(layout.edges).toEqual([expect.objectContaining({ from: "mul", to: "x", count: 2 })]);
  });

  it("lays out an empty graph", () => {
    const layout = computeLayout([]);
    expect(layout).toMatchObject({ nodes: [], edges: [], width: 0, height: 0 });
  });
});

describe("placement", () => {
  it("centres a parent over its children and keeps a chain straight", () => {
    const layout = computeLayout([
      { id: "root", width: 80, height: 30, next: ["a", "b"] },
      { id: "a", width: 80, height: 30, next: [] },
      { id: "b", width: 80, height: 30, next: [] },
    ]);
    const p = byId(layout);
    const mid = ((p.get("a")?.cx ?? 0) + (p.get("b")?.cx ?? 0)) / 2;
    expect(p.get("root")?.cx).toBeCloseTo(mid);
    const straight = computeLayout(chain(50));
    expect(new Set(straight.nodes.map((n) => n.cx)).size).toBe(1);
  });

  it("routes a long edge through its own points and ends on the boxes", () => {
    // root → mid → leaf plus a skip root → leaf: the skip spans two layers.
    const layout = computeLayout([
      { id: "root", width: 80, height: 30, next: ["mid", "leaf"] },
      { id: "mid", width: 80, height: 30, next: ["leaf"] },
      { id: "leaf", width: 80, height: 30, next: [] },
    ]);
    const p = byId(layout);
    const skip = layout.edges.find((e) => e.from === "root" && e.to === "leaf");
    expect(skip?.points).toHaveLength(3);
    const root = p.get("root");
    const leaf = p.get("leaf");
    expect(skip?.points[0]?.y).toBeCloseTo((root?.cy ?? 0) + 15);
    expect(skip?.points[2]?.y).toBeCloseTo((leaf?.cy ?? 0) - 15);
  });

  it("reduces crossings of a crossed bipartite graph", () => {
    // Initial order a, b over c, d with a → d and b → c crosses; the sweep uncrosses it.
    const layout = computeLayout([
      { id: "r", width: 40, height: 20, next: ["a", "b"] },
      { id: "a", width: 40, height: 20, next: ["d"] },
      { id: "b", width: 40, height: 20, next: ["c"] },
      { id: "c", width: 40, height: 20, next: [] },
      { id: "d", width: 40, height: 20, next: [] },
      { id: "r2", width: 40, height: 20, next: ["c", "d"] },
    ]);
    const p = byId(layout);
    const aLeft = (p.get("a")?.cx ?? 0) < (p.get("b")?.cx ?? 0);
    const dLeft = (p.get("d")?.cx ?? 0) < (p.get("c")?.cx ?? 0);
    expect(aLeft).toBe(dLeft);
  });
});

describe("directions", () => {
  // Square boxes, so the four directions are exact mirror images and rotations of each other.
  const input = backwardDag(300, 3).map((n) => ({ ...n, width: 40, height: 40 }));
  const tb = computeLayout(input, { direction: "TB" });
  const bt = computeLayout(input, { direction: "BT" });
  const lr = computeLayout(input, { direction: "LR" });
  const rl = computeLayout(input, { direction: "RL" });

  it("BT mirrors TB vertically, LR transposes it, RL mirrors LR", () => {
    expect(bt.width).toBeCloseTo(tb.width);
    expect(lr.width).toBeCloseTo(tb.height);
    expect(lr.height).toBeCloseTo(tb.width);
    tb.nodes.forEach((n, i) => {
      expect(bt.nodes[i]?.cx).toBeCloseTo(n.cx);
      expect(bt.nodes[i]?.cy).toBeCloseTo(tb.height - n.cy);
      expect(lr.nodes[i]?.cx).toBeCloseTo(n.cy);
      expect(lr.nodes[i]?.cy).toBeCloseTo(n.cx);
      expect(rl.nodes[i]?.cx).toBeCloseTo(tb.height - n.cy);
      expect(rl.nodes[i]?.cy).toBeCloseTo(n.cx);
    });
  });

  it("keeps every node inside the layout box", () => {
    for (const l of [tb, bt, lr, rl]) {
      for (const n of l.nodes) {
        expect(n.cx - n.width / 2).toBeGreaterThanOrEqual(-1e-6);
        expect(n.cy - n.height / 2).toBeGreaterThanOrEqual(-1e-6);
        expect(n.cx + n.width / 2).toBeLessThanOrEqual(l.width + 1e-6);
        expect(n.cy + n.height / 2).toBeLessThanOrEqual(l.height + 1e-6);
      }
    }
  });
});

describe("deep graphs (no recursion: dagre and elkjs overflow the stack here)", () => {
  it("lays out a 2,000-node chain", () => {
    const layout = computeLayout(chain(2000));
    expect(layout.layerCount).toBe(2000);
  });

  it("lays out a 20,000-node chain", () => {
    const layout = computeLayout(chain(20_000));
    expect(layout.layerCount).toBe(20_000);
    expect(layout.nodes[19_999]?.layer).toBe(19_999);
  });

  it("lays out a 20,000-node backward-shaped DAG in reasonable time", () => {
    const input = backwardDag(20_000);
    const start = performance.now();
    const layout = computeLayout(input);
    const seconds = (performance.now() - start) / 1000;
    expect(layout.nodes).toHaveLength(20_000);
    expect(layout.layerCount).toBeGreaterThan(10_000);
    expectLayered(input, layout);
    expect(seconds).toBeLessThan(15);
  }, 60_000);

  it("bounds the main thread's dummies when a shared leaf is used by every step (unrolled RNN)", () => {
    // 400 steps in a chain; every step also uses the same weight, laid out below the last step
    const steps = 400;
    const input = Array.from({ length: steps + 1 }, (_, i) => ({
      id: `n${i}`,
      width: 60,
      height: 20,
      next: i < steps ? [`n${i + 1}`, "w"] : [],
    }));
    input.push({ id: "w", width: 60, height: 20, next: [] });
    const unbounded = computeLayout(input);
    const count = (l: typeof unbounded): number => l.edges.reduce((sum, e) => sum + e.points.length - 2, 0);
    expect(count(unbounded)).toBeGreaterThan(dummyBudget(input.length)); // ~80k without a budget
    const bounded = computeLayout(input, { maxDummies: dummyBudget(input.length) });
    expectLayered(input, bounded);
    expect(count(bounded)).toBeLessThanOrEqual(dummyBudget(input.length));
  });

  it("draws edges over the dummy budget as direct curves", () => {
    const input = backwardDag(3000, 5);
    const layout = computeLayout(input, { maxDummies: 10 });
    expectLayered(input, layout);
    const dummies = layout.edges.reduce((sum, e) => sum + e.points.length - 2, 0);
    expect(dummies).toBeLessThanOrEqual(10);
  });
});
