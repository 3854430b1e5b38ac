// @vitest-environment jsdom
// Names from the user's program may hold a right-to-left override (U+202E) or RTL script: each sits
// in its own <bdi> (isolated by the browser's own stylesheet), still as text, so it cannot reorder
// the text around it ("model.‮moc.weight  not in graph" read backwards past the name).

import { blockGraph } from "./big-graphs";
import { emptyGraph, LEAF, MUL } from "./fixtures";
import { click, inspector, mount, nodeEl, q, useMountedViews } from "./mount";
import { diff, toggles, whatIfGraph, why } from "./whatif-fixtures";

useMountedViews();

const RLO = "\u202e";
const EVIL = `שלום_${RLO}moc_evil`;

function rtlGraph() {
  const g = whatIfGraph(1);
  const mul = g.nodes.find((n) => n.id === MUL);
  const leaf = g.nodes.find((n) => n.id === LEAF);
  if (!mul || !leaf?.leaf) throw new Error("fixture changed");
  mul.module = EVIL;
  mul.variable = `out_${RLO}x`;
  mul.source = `cell.py:3  h = self.${EVIL}(x)`;
  leaf.leaf.name = `${EVIL}.weight`;
  g.controls.leaves = [
    { name: `${EVIL}.weight`, requires_grad: true, in_graph: true, dtype: "float32" },
    { name: `${EVIL}.bias`, requires_grad: false, in_graph: false, dtype: "float32" },
  ];
  g.controls.modules = ["", EVIL, `${EVIL}.inner`];
  g.controls.variables = [`out_${RLO}x`];
  g.missing = [why(`${EVIL}.bias`, { where: MUL })];
  g.run.toggles = toggles({ requires_grad: { [`${EVIL}.weight`]: false } });
  return g;
}

/** Text nodes holding U+202E outside any <bdi>, in the HTML of `root` (SVG labels are one line each). */
function unisolated(root: Element): string[] {
  const out: string[] = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t !== null; t = walker.nextNode()) {
    const parent = t.parentElement;
    if (!parent || !(t.textContent ?? "").includes(RLO)) continue;
    if (parent.closest("svg, option, select") !== null) continue;
    if (parent.closest("bdi") === null) out.push(`${parent.tagName}.${parent.className}: ${t.textContent}`);
  }
  return out;
}

describe("user-named text", () => {
  it("is isolated in <bdi> in the panel, the inspector, the missing list and the diff", () => {
    const history = [
      { index: 0, label: "first run", loss: 0.25, nodes: 4, error: null },
      { index: 1, label: `${EVIL}.requires_grad=False`, loss: 0.5, nodes: 4, error: null },
    ];
    const rtlDiff = diff({
      removed: [{ id: "x/ReluBackward0#0", name: `Relu_${RLO}Backward0`, kind: "op", module: EVIL }],
      gained_grad: [`${EVIL}.weight`],
      lost_grad: [`${EVIL}.bias`],
      grad_norms: [{ name: `${EVIL}.weight`, before: 1, after: 2 }],
    });
    const { el, model } = mount(rtlGraph(), {
      history,
      current: 1,
      baseline: 0,
      diff: rtlDiff,
      pending: toggles({ no_grad: [EVIL] }),
    });
    click(nodeEl(el, MUL));
    expect(unisolated(el)).toEqual([]);
    click(nodeEl(el, LEAF));
    expect(unisolated(el)).toEqual([]);
    // the text is still text: the name reads as given, in a <bdi>, and no markup came of it
    expect(q(inspector(el), "h3 bdi").textContent).toBe(`${EVIL}.weight`);
    expect(el.textContent).toContain(EVIL);
    expect(model.sent().length).toBeGreaterThan(0);
  });
});

describe("user-named text in the big view", () => {
  it("is isolated in the outline and the search results", () => {
    const blocks = Array.from({ length: 24 }, (_, i) => ({
      module: `${EVIL}.${i}`,
      ops: Array(100).fill("MulBackward0"),
      params: ["weight"],
    }));
    const nodes = blockGraph(blocks);
    const { el } = mount(emptyGraph({ roots: [nodes[0]?.id ?? ""], nodes }));
    const outline = q(el, '[data-gradsight="outline"]');
    expect(outline.textContent).toContain(RLO);
    const search = q<HTMLInputElement>(el, '[data-gradsight="search"]');
    search.value = "moc_evil";
    search.dispatchEvent(new Event("input", { bubbles: true }));
    expect(q(el, '[data-gradsight="search-results"]').textContent).toContain(RLO);
    expect(unisolated(el)).toEqual([]);
  });
});
