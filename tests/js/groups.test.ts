// Grouping by module: the hierarchy from dotted module paths, counts and badges, and repeated
// blocks (`encoder.layers.0` … `encoder.layers.11`) recognized by their op-name multisets.

import { groupBadges, groupTitle } from "../../js/big-label";
import { Expansion } from "../../js/expansion";
import { indexNodes } from "../../js/graph-index";
import { ancestry, buildGroups, type Group, ROOT_GROUP } from "../../js/groups";
import type { WireNode } from "../../js/wire";
import { blockGraph, NAN_GRAD, transformerGraph } from "./big-graphs";
import { node } from "./fixtures";

function tree(nodes: WireNode[]) {
  const ix = indexNodes(nodes, [(nodes[0] as WireNode).id]);
  return { ix, tree: buildGroups(ix) };
}

const byPath = (t: ReturnType<typeof buildGroups>, path: string): Group => {
  const g = t.byPath.get(path);
  if (g === undefined) throw new Error(`no group ${path}`);
  return t.groups[g] as Group;
};

describe("module groups", () => {
  it("builds the hierarchy from dotted paths, parents before children", () => {
    const { tree: t } = tree(transformerGraph(12).nodes);
    const root = t.groups[ROOT_GROUP] as Group;
    expect(root.path).toBe("");
    expect(root.children.map((g) => (t.groups[g] as Group).path)).toEqual(["embed", "encoder", "head"]);
    const layers = byPath(t, "encoder.layers");
    // Natural order: 2 before 10.
    expect(layers.children.map((g) => (t.groups[g] as Group).name)).toEqual(
      Array.from({ length: 12 }, (_, i) => String(i)),
    );
    t.groups.forEach((g, i) => {
      if (i > 0) expect(g.parent).toBeLessThan(i);
    });
    expect(
      ancestry(t, t.byPath.get("encoder.layers.3.attn") as number).map((g) => (t.groups[g] as Group).path),
    ).toEqual(["encoder", "encoder.layers", "encoder.layers.3", "encoder.layers.3.attn"]);
  });

  it("counts every node inside, at any depth, once", () => {
    const { ix, tree: t } = tree(transformerGraph(12).nodes);
    const root = t.groups[ROOT_GROUP] as Group;
    expect(root.total).toBe(ix.count);
    // A layer: AddBackward0 + LayerNorm + its weight; mlp 3 ops + 2 weights; attn 5 ops + 2 weights.
    expect(byPath(t, "encoder.layers.0").total).toBe(3 + 5 + 7);
    expect(byPath(t, "encoder.layers.0").nodes).toHaveLength(3);
    expect(byPath(t, "encoder").total).toBe(12 * 15);
    expect(byPath(t, "encoder").nodes).toHaveLength(0);
    for (const g of t.groups) {
      const inside = g.nodes.length + g.children.reduce((s, c) => s + (t.groups[c] as Group).total, 0);
      expect(g.total).toBe(inside);
    }
  });

  it("badges a group with its largest gradient norm and NaN / Inf inside", () => {
    const nodes = transformerGraph(3).nodes.map((n) => {
      if (n.id === "encoder.layers.1.mlp/GeluBackward0#0") return { ...n, grad_norm: 7.5, grad_in: [NAN_GRAD] };
      if (n.id === "encoder.layers.2.attn/SoftmaxBackward0#0") return { ...n, grad_norm: 0.25 };
      return n;
    });
    const { tree: t } = tree(nodes);
    expect(byPath(t, "encoder").maxNorm).toBe(7.5);
    expect(byPath(t, "encoder").nonfinite).toBe(1);
    expect(byPath(t, "encoder.layers.2").maxNorm).toBe(0.25);
    expect(byPath(t, "encoder.layers.2").nonfinite).toBe(0);
    expect(Number.isNaN(byPath(t, "head").maxNorm)).toBe(true);
    expect(groupBadges(byPath(t, "encoder.layers.1"))).toContain("NaN/Inf");
    expect(groupBadges(byPath(t, "encoder.layers.1")).some((b) => b.includes("7.5"))).toBe(true);
  });

  it("recognizes 12 identical blocks, and says which one each is", () => {
    const { tree: t } = tree(transformerGraph(12).nodes);
    const layers = byPath(t, "encoder.layers");
    expect(layers.series).toBe(12);
    expect(groupBadges(layers)).toContain("×12 identical blocks");
    const third = byPath(t, "encoder.layers.2");
    expect(third.repeat).toEqual({ count: 12, index: 2 });
    expect(groupBadges(third)).toContain("3 of 12 identical");
    expect(groupTitle(third, layers)).toBe("layers.2");
    // Inside one layer, attn and mlp differ: not a repeat.
    expect(byPath(t, "encoder.layers.2.attn").repeat).toBeNull();
    expect(byPath(t, "encoder.layers.2").series).toBe(0);
  });

  it("tells a block that differs from its siblings apart", () => {
    const blocks = [0, 1, 2, 3].map((i) => ({
      module: `layers.${i}`,
      ops: i === 3 ? ["AddmmBackward0", "ReluBackward0"] : ["AddmmBackward0", "TanhBackward0"],
      params: ["weight"],
    }));
    const { tree: t } = tree(blockGraph(blocks));
    expect(byPath(t, "layers").series).toBe(3);
    expect(byPath(t, "layers.0").repeat).toEqual({ count: 3, index: 0 });
    expect(byPath(t, "layers.3").repeat).toBeNull();
  });

  it("keeps nodes without a module at the top level", () => {
    const { ix, tree: t } = tree(transformerGraph(2).nodes);
    const root = t.groups[ROOT_GROUP] as Group;
    expect(root.nodes.map((i) => ix.ids[i])).toEqual(["SumBackward0#0"]);
    expect(t.groupOf[0]).toBe(ROOT_GROUP);
  });
});

describe("expansion state", () => {
  const paths = (e: Expansion, t: ReturnType<typeof buildGroups>) =>
    [...e.of(t)].map((g) => (t.groups[g] as Group).path).sort();

  it("opens a lone top-level group by itself, down to the first real choice", () => {
    const nodes = blockGraph([0, 1].map((i) => ({ module: `model.blocks.${i}`, ops: ["MulBackward0"] })));
    const { tree: t } = tree(nodes);
    const e = new Expansion();
    e.reset(t);
    expect(paths(e, t)).toEqual(["model", "model.blocks"]);
    e.reset(tree(transformerGraph(2).nodes).tree);
    expect(paths(e, tree(transformerGraph(2).nodes).tree)).toEqual([]);
  });

  it("closes what was open inside a group it closes, and keeps paths across graphs", () => {
    const { tree: t } = tree(transformerGraph(3).nodes);
    const e = new Expansion();
    const at = (p: string) => t.byPath.get(p) as number;
    expect(e.open(t, [at("encoder"), at("encoder.layers"), at("encoder.layers.1")])).toBe(true);
    expect(e.open(t, [at("encoder")])).toBe(false);
    e.toggle(t, at("head"));
    e.toggle(t, at("encoder"));
    expect(paths(e, t)).toEqual(["head"]);
    const other = tree(transformerGraph(5).nodes).tree;
    expect(paths(e, other)).toEqual(["head"]);
  });
});

describe("nodes without a module", () => {
  /**
   * What a tensor debugger reports for two MLP blocks: only ops consuming a parameter have a module.
   * loss ← add (between blocks) ← fc2 ← relu ← fc1 ← (block 0 the same) ← input.
   */
  function tensorDebuggerGraph(): WireNode[] {
    const op = (id: string, module: string | null, next: string[]) =>
      node(id, { name: id.split("#")[0]?.split("/").at(-1) ?? id, module, next: next.map((t, nr) => [t, nr]) });
    return [
      op("MeanBackward0#0", null, ["PowBackward0#0"]),
      op("PowBackward0#0", null, ["AddBackward0#1"]),
      op("AddBackward0#1", null, ["blocks.1.fc2/AddmmBackward0#0", "AddBackward0#0"]),
      op("blocks.1.fc2/AddmmBackward0#0", "blocks.1.fc2", ["ReluBackward0#1"]),
      op("ReluBackward0#1", null, ["MulBackward0#1"]),
      op("MulBackward0#1", null, ["blocks.1.fc1/AddmmBackward0#0"]),
      op("blocks.1.fc1/AddmmBackward0#0", "blocks.1.fc1", ["AddBackward0#0"]),
      op("AddBackward0#0", null, ["blocks.0.fc2/AddmmBackward0#0"]),
      op("blocks.0.fc2/AddmmBackward0#0", "blocks.0.fc2", ["ReluBackward0#0"]),
      op("ReluBackward0#0", null, ["MulBackward0#0"]),
      op("MulBackward0#0", null, ["blocks.0.fc1/AddmmBackward0#0"]),
      op("blocks.0.fc1/AddmmBackward0#0", "blocks.0.fc1", []),
    ];
  }

  it("shows a node between two parts of one module inside that module, through chains", () => {
    const { ix, tree: t } = tree(tensorDebuggerGraph());
    const where = (id: string) => (t.groups[t.groupOf[ix.indexOf.get(id) as number] as number] as Group).path;
    expect(where("ReluBackward0#1")).toBe("blocks.1");
    expect(where("MulBackward0#1")).toBe("blocks.1");
    expect(where("ReluBackward0#0")).toBe("blocks.0");
    expect(t.placed[ix.indexOf.get("MulBackward0#0") as number]).toBe(1);
    expect(byPath(t, "blocks.1").nodes.map((i) => ix.ids[i])).toEqual(["ReluBackward0#1", "MulBackward0#1"]);
    // The blocks are the same again once their loose ops are counted in.
    expect(byPath(t, "blocks").series).toBe(2);
  });

  it("puts the stream between blocks in their container, and keeps the loss at the top", () => {
    const { ix, tree: t } = tree(tensorDebuggerGraph());
    const top = (t.groups[ROOT_GROUP] as Group).nodes.map((i) => ix.ids[i]);
    expect(top).toEqual(["MeanBackward0#0", "PowBackward0#0", "AddBackward0#1"]);
    expect(byPath(t, "blocks").nodes.map((i) => ix.ids[i])).toEqual(["AddBackward0#0"]);
    // A module's own nodes never move.
    const fc1 = ix.indexOf.get("blocks.0.fc1/AddmmBackward0#0") as number;
    expect((t.groups[t.groupOf[fc1] as number] as Group).path).toBe("blocks.0.fc1");
  });
});
