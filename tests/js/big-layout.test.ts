// Layout of what is visible: items and levels for an expansion state, folded leaves, lifted edges,
// cached level layouts (collapse restores positions exactly, expansion keeps the rest in order),
// the Worker client (and its main-thread fallback), and a 50,000-node backward-shaped graph laid
// out through the worker code path without a RangeError.

import { groupBoxSize, nodeItemSize, type Size } from "../../js/big-label";
import { type Anchor, anchoredTransform, anchorOf, nodeTarget } from "../../js/big-place";
import { type GraphIndex, indexNodes } from "../../js/graph-index";
import { buildGroups, type Group, type GroupTree } from "../../js/groups";
import { LayoutClient } from "../../js/layout-client";
import { type LayoutJob, type LevelLayout, runLayoutJob } from "../../js/layout-job";
import { LevelCache, planLayout } from "../../js/layout-plan";
import { composeScene, type Scene, T_LEAF, T_NODE } from "../../js/scene";
import type { Transform } from "../../js/state";
import { computeVisible, ITEM_FRAME, ITEM_GROUP, ITEM_NODE, type Visible } from "../../js/visible";
import type { WireNode } from "../../js/wire";
import { transformerGraph } from "./big-graphs";
import { node } from "./fixtures";
import { backwardDag } from "./graphs";

function setup(nodes: WireNode[]) {
  const ix = indexNodes(nodes, [(nodes[0] as WireNode).id]);
  return { ix, tree: buildGroups(ix), cache: new LevelCache() };
}

type Setup = ReturnType<typeof setup>;

function sizesOf(ix: GraphIndex, tree: GroupTree, visible: Visible, flat: boolean): Size[] {
  return visible.items.map((item) => {
    if (item.kind === ITEM_NODE) return nodeItemSize(ix, item.ref, item.leaves, flat);
    if (item.kind === ITEM_FRAME) return { width: 0, height: 0 };
    const g = tree.groups[item.ref] as Group;
    return groupBoxSize(g, tree.groups[g.parent]);
  });
}

/** Lay out synchronously (the main-thread path), as big-view.ts does; `jobs` counts layout jobs. */
function sceneFor(s: Setup, paths: string[], opts: { flat?: boolean; foldLeaves?: boolean } = {}) {
  const expanded = new Set(paths.map((p) => s.tree.byPath.get(p) as number));
  const flat = opts.flat ?? false;
  const visible = computeVisible(s.ix, s.tree, { flat, foldLeaves: opts.foldLeaves ?? true, expanded });
  const sizes = sizesOf(s.ix, s.tree, visible, flat);
  const plan = planLayout(visible, sizes, "TB", s.cache, 1);
  const fresh = plan.job ? runLayoutJob(plan.job) : [];
  fresh.forEach((l, k) => {
    s.cache.set(plan.jobSigs[k] as string, l);
  });
  const scene = composeScene(
    s.ix,
    visible,
    plan.sigs.map((sig) => s.cache.get(sig)),
    sizes,
    "TB",
  );
  return { visible, scene, laidOut: fresh.length };
}

/** Absolute box of a group's item (box or frame) or a node's own item. */
function boxOf(scene: Scene, item: number) {
  return {
    x: scene.x[item] as number,
    y: scene.y[item] as number,
    w: scene.w[item] as number,
    h: scene.h[item] as number,
  };
}

const groupItem = (s: Setup, v: Visible, path: string): number =>
  v.groupItem[s.tree.byPath.get(path) as number] as number;

describe("visible items", () => {
  it("shows top-level groups collapsed, with ungrouped nodes beside them", () => {
    const s = setup(transformerGraph(12).nodes);
    const { visible } = sceneFor(s, []);
    expect(visible.levels).toHaveLength(1);
    const shown = visible.items.filter((it) => it.level === 0 && it.local >= 0);
    expect(
      shown
        .filter((it) => it.kind === ITEM_GROUP)
        .map((it) => (s.tree.groups[it.ref] as Group).path)
        .sort(),
    ).toEqual(["embed", "encoder", "head"]);
    expect(shown.filter((it) => it.kind === ITEM_NODE).map((it) => s.ix.ids[it.ref])).toEqual(["SumBackward0#0"]);
    // Every node is shown by some item: hidden ones by their collapsed group.
    for (let i = 0; i < s.ix.count; i++) expect(visible.nodeItem[i]).toBeGreaterThanOrEqual(0);
    // Root first in its level, as Python listed it.
    expect(visible.levels[0]?.items[0]).toBe(visible.nodeItem[0]);
  });

  it("folds leaves beside their first consumer, or shows them as nodes", () => {
    const s = setup(transformerGraph(2).nodes);
    const all = ["encoder", "encoder.layers", "encoder.layers.0", "encoder.layers.0.mlp"];
    const folded = sceneFor(s, all).visible;
    const leaf = s.ix.indexOf.get("leaf:encoder.layers.0.mlp.fc1.weight") as number;
    const host = s.ix.indexOf.get("encoder.layers.0.mlp/AddmmBackward0#0") as number;
    expect(folded.host[leaf]).toBe(host);
    expect(folded.nodeItem[leaf]).toBe(folded.nodeItem[host]);
    expect(folded.items[folded.nodeItem[host] as number]?.leaves).toContain(leaf);
    // No edge goes into a folded leaf: the fold is the edge.
    for (const e of folded.edges)
      expect(folded.items[e.to]?.kind === ITEM_NODE && folded.items[e.to]?.ref === leaf).toBe(false);
    const { visible: shown, scene } = sceneFor(s, all, { foldLeaves: false });
    expect(shown.host[leaf]).toBe(-1);
    expect(shown.items[shown.nodeItem[leaf] as number]?.ref).toBe(leaf);
    expect(scene.kind[scene.itemTarget[shown.nodeItem[leaf] as number] as number]).toBe(T_NODE);
    const foldedScene = sceneFor(s, all).scene;
    expect(foldedScene.kind[foldedScene.leafTarget.get(leaf) as number]).toBe(T_LEAF);
  });

  it("lifts edges between items in different frames to the level where they meet", () => {
    const s = setup(transformerGraph(3).nodes);
    const { visible } = sceneFor(s, ["encoder", "encoder.layers"]);
    const root = visible.levels[0];
    if (!root) throw new Error("no root level");
    // head → encoder (frame) → embed, all at the root level.
    const local = (path: string) => visible.items[groupItem(s, visible, path)]?.local;
    const pairs: [number, number][] = [];
    for (let k = 0; k < root.edges.length; k += 2) pairs.push([root.edges[k] as number, root.edges[k + 1] as number]);
    expect(pairs).toContainEqual([local("head"), local("encoder")]);
    expect(pairs).toContainEqual([local("encoder"), local("embed")]);
    // Between the layers: inside the encoder.layers level.
    const layers = visible.levels.find((l) => l.group === s.tree.byPath.get("encoder.layers"));
    expect(layers?.edges.length).toBeGreaterThanOrEqual(4);
  });

  it("shows every node in one level in the flat view", () => {
    const s = setup(transformerGraph(2).nodes);
    const { visible, scene } = sceneFor(s, [], { flat: true, foldLeaves: false });
    expect(visible.levels).toHaveLength(1);
    expect(visible.items.every((it) => it.kind === ITEM_NODE)).toBe(true);
    expect(visible.items).toHaveLength(s.ix.count);
    expect(scene.grid.size).toBe(s.ix.count);
  });
});

describe("stable positions across expand and collapse", () => {
  it("collapsing restores every position exactly, without laying out again", () => {
    const s = setup(transformerGraph(12).nodes);
    const before = sceneFor(s, ["encoder"]);
    const opened = sceneFor(s, ["encoder", "encoder.layers", "encoder.layers.4"]);
    expect(opened.laidOut).toBeGreaterThan(0);
    const after = sceneFor(s, ["encoder"]);
    expect(after.laidOut).toBe(0);
    expect(Array.from(after.scene.x)).toEqual(Array.from(before.scene.x));
    expect(Array.from(after.scene.y)).toEqual(Array.from(before.scene.y));
  });

  it("expanding a group keeps the order of everything else, and what sits above it in place", () => {
    const s = setup(transformerGraph(12).nodes);
    const a = sceneFor(s, ["encoder", "encoder.layers"]);
    const b = sceneFor(s, ["encoder", "encoder.layers", "encoder.layers.6"]);
    // Items of the root level and of encoder.layers keep their layer and order.
    for (const path of ["head", "encoder", "embed", "encoder.layers.2", "encoder.layers.9"]) {
      const ia = groupItem(s, a.visible, path);
      const ib = groupItem(s, b.visible, path);
      expect([b.scene.layer[ib], b.scene.order[ib]], path).toEqual([a.scene.layer[ia], a.scene.order[ia]]);
    }
    // In TB, layers above the expanded block do not move down.
    for (const path of ["head", "encoder.layers.11", "encoder.layers.7"]) {
      const ia = groupItem(s, a.visible, path);
      const ib = groupItem(s, b.visible, path);
      expect(boxOf(b.scene, ib).y, path).toBeCloseTo(boxOf(a.scene, ia).y);
    }
    const root = s.ix.indexOf.get("SumBackward0#0") as number;
    expect(b.scene.y[b.visible.nodeItem[root] as number]).toBe(a.scene.y[a.visible.nodeItem[root] as number]);
  });

  it("keeps the inside of other open groups as it was, relative to their frame", () => {
    const s = setup(transformerGraph(4).nodes);
    const a = sceneFor(s, ["head", "encoder"]);
    const b = sceneFor(s, ["head", "encoder", "encoder.layers"]);
    const headA = groupItem(s, a.visible, "head");
    const headB = groupItem(s, b.visible, "head");
    const ids = ["head/AddmmBackward0#0", "head/TBackward0#0"];
    for (const id of ids) {
      const i = s.ix.indexOf.get(id) as number;
      const ia = a.visible.nodeItem[i] as number;
      const ib = b.visible.nodeItem[i] as number;
      expect((b.scene.x[ib] as number) - (b.scene.x[headB] as number)).toBeCloseTo(
        (a.scene.x[ia] as number) - (a.scene.x[headA] as number),
      );
      expect((b.scene.y[ib] as number) - (b.scene.y[headB] as number)).toBeCloseTo(
        (a.scene.y[ia] as number) - (a.scene.y[headA] as number),
      );
    }
  });

  it("nests frames: an expanded group's items lie inside its frame", () => {
    const s = setup(transformerGraph(3).nodes);
    const { visible, scene } = sceneFor(s, ["encoder", "encoder.layers", "encoder.layers.1"]);
    for (const level of visible.levels) {
      if (level.frame < 0) continue;
      const f = boxOf(scene, level.frame);
      for (const it of level.items) {
        const b = boxOf(scene, it);
        expect(b.x).toBeGreaterThanOrEqual(f.x);
        expect(b.y).toBeGreaterThan(f.y);
        expect(b.x + b.w).toBeLessThanOrEqual(f.x + f.w + 1e-6);
        expect(b.y + b.h).toBeLessThanOrEqual(f.y + f.h + 1e-6);
      }
    }
  });

  it("lays out identical repeated blocks once (same signature, one cached layout)", () => {
    const s = setup(transformerGraph(12).nodes);
    sceneFor(s, ["encoder", "encoder.layers"]);
    const before = s.cache.size;
    const all = ["encoder", "encoder.layers", ...Array.from({ length: 12 }, (_, i) => `encoder.layers.${i}`)];
    const { laidOut } = sceneFor(s, all);
    // One layout for a block, shared by all 12, and one for each level around them (their frames grew):
    // encoder.layers, encoder and the root level.
    expect(laidOut).toBe(4);
    expect(s.cache.size).toBe(before + 4);
  });
});

describe("a 50,000-node backward-shaped graph", () => {
  it("lays out through the worker code path, on the main thread, without a RangeError", () => {
    const dag = backwardDag(50_000);
    const nodes = dag.map((d, k) =>
      node(d.id, {
        name: "MulBackward0",
        kind: k === 0 ? "root" : "op",
        next: d.next.map((t, nr): [string, number] => [t, nr]),
      }),
    );
    const s = setup(nodes);
    const visible = computeVisible(s.ix, s.tree, { flat: true, foldLeaves: true, expanded: new Set() });
    const sizes = sizesOf(s.ix, s.tree, visible, true);
    const plan = planLayout(visible, sizes, "TB", s.cache, 7);
    const job = plan.job as LayoutJob;
    expect(job.levels[0]?.widths).toHaveLength(50_000);
    let levels: LevelLayout[] = [];
    const client = new LayoutClient(""); // no worker source: the main-thread fallback
    expect(client.usesWorker).toBe(false);
    client.run(job, { progress: () => {}, done: (l) => (levels = l), error: (m) => expect.fail(m) });
    expect(levels).toHaveLength(1);
    const scene = composeScene(s.ix, visible, levels, sizes, "TB");
    expect(scene.grid.size).toBe(50_000);
    const root = scene.itemTarget[visible.nodeItem[0] as number] as number;
    const g = scene.grid;
    expect(g.pick((g.x[root] as number) + 5, (g.y[root] as number) + 5)).toBe(root);
    client.destroy();
  }, 120_000);
});

describe("places on the big view's scene (big-place.ts)", () => {
  it("keeps a group where it was on screen when the layout moves it, at the same zoom", () => {
    const s = setup(transformerGraph(12).nodes);
    const a = sceneFor(s, []);
    const b = sceneFor(s, ["encoder"]);
    // embed sits below the encoder (TB), which opening pushes it further down
    const g = s.tree.byPath.get("embed") as number;
    const t = { x: 40, y: -25, k: 0.5 };
    const was = boxOf(a.scene, groupItem(s, a.visible, "embed"));
    const anchor = anchorOf(a.visible, a.scene, t, g) as Anchor;
    expect(anchor).toEqual({ group: g, sx: was.x * 0.5 + 40, sy: was.y * 0.5 - 25 });
    const now = boxOf(b.scene, groupItem(s, b.visible, "embed"));
    expect([now.x, now.y]).not.toEqual([was.x, was.y]);
    const kept = anchoredTransform(b.visible, b.scene, t, anchor) as Transform;
    expect(kept.k).toBe(0.5);
    expect(now.x * kept.k + kept.x).toBeCloseTo(anchor.sx);
    expect(now.y * kept.k + kept.y).toBeCloseTo(anchor.sy);
  });

  it("has no anchor for a group the scene does not show", () => {
    const s = setup(transformerGraph(3).nodes);
    const { visible, scene } = sceneFor(s, []);
    const hidden = s.tree.byPath.get("encoder.layers.1") as number;
    const t = { x: 0, y: 0, k: 1 };
    expect(anchorOf(visible, scene, t, hidden)).toBeNull();
    expect(anchorOf(null, null, t, s.tree.byPath.get("encoder") as number)).toBeNull();
    expect(anchoredTransform(visible, scene, t, { group: hidden, sx: 5, sy: 5 })).toBeNull();
  });

  it("finds the target showing a node: its box, its folded pill, or the collapsed group holding it", () => {
    const s = setup(transformerGraph(2).nodes);
    const leaf = s.ix.indexOf.get("leaf:encoder.layers.0.mlp.fc1.weight") as number;
    const host = s.ix.indexOf.get("encoder.layers.0.mlp/AddmmBackward0#0") as number;
    const collapsed = sceneFor(s, []);
    const encoder = collapsed.scene.itemTarget[groupItem(s, collapsed.visible, "encoder")];
    expect(nodeTarget(collapsed.scene, collapsed.visible, host)).toBe(encoder);
    expect(nodeTarget(collapsed.scene, collapsed.visible, leaf)).toBe(encoder);
    const open = sceneFor(s, ["encoder", "encoder.layers", "encoder.layers.0", "encoder.layers.0.mlp"]);
    expect(nodeTarget(open.scene, open.visible, leaf)).toBe(open.scene.leafTarget.get(leaf));
    expect(open.scene.kind[nodeTarget(open.scene, open.visible, leaf)]).toBe(T_LEAF);
    expect(open.scene.kind[nodeTarget(open.scene, open.visible, host)]).toBe(T_NODE);
    expect(nodeTarget(null, open.visible, host)).toBe(-1);
  });
});
