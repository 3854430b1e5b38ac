// @vitest-environment jsdom
// The re-run button counts the changes from the run shown (after a re-run Python leaves `pending`
// at that run's toggles: it said "Re-run with 1 change" for a change already made), and integer
// leaves get no requires_grad box (torch refuses requires_grad for them: the re-run always failed).

import { canRequireGrad, NO_GRAD_DTYPE } from "../../js/toggles";
import type { WireGraph } from "../../js/wire";
import { click, inspector, mount, nodeEl, q, useMountedViews } from "./mount";
import { FROZEN, LEAF, toggles, whatIfGraph } from "./whatif-fixtures";

useMountedViews();

const rerunButton = (el: HTMLElement): HTMLButtonElement => q<HTMLButtonElement>(el, '[data-action="rerun"]');
const summary = (el: HTMLElement): string => q(el, '[data-gradsight="pending"]').textContent ?? "";
const leafBox = (el: HTMLElement, name: string): HTMLInputElement | null =>
  el.querySelector<HTMLInputElement>(`[data-toggle="requires-grad"][data-leaf="${name}"]`);

describe("the re-run button's count", () => {
  it("is back to none once Python re-ran with the pending change, and counts from the run shown", () => {
    const { el, model } = mount(whatIfGraph(0));
    leafBox(el, "input1")?.click();
    expect(rerunButton(el).textContent).toBe("Re-run with 1 change");
    // Python re-runs: a new graph whose run carries the toggles, and `pending` left at them
    const off = toggles({ requires_grad: { input1: false } });
    const after = whatIfGraph(1);
    after.run.toggles = off;
    model.pySet("graph", after);
    model.pySet("pending", off);
    expect(rerunButton(el).textContent).toBe("Re-run");
    expect(rerunButton(el).classList.contains("gs-pending")).toBe(false);
    expect(summary(el)).toBe("");
    expect(leafBox(el, "input1")?.checked).toBe(false); // the panel shows the run's toggles
    // a further change counts from that run: one change, not two
    q<HTMLInputElement>(el, '[data-scope-toggle="no-grad"][data-module="layer1"]').click();
    expect(rerunButton(el).textContent).toBe("Re-run with 1 change");
    // back to run 0 (no toggles), the same pending toggles are two changes from it
    model.pySet("graph", whatIfGraph(0));
    expect(rerunButton(el).textContent).toBe("Re-run with 2 changes");
  });

  it("counts a change undone after a re-run as a change (turning a leaf back on)", () => {
    const { el, model } = mount(whatIfGraph(0));
    const off = toggles({ requires_grad: { input1: false } });
    const after = whatIfGraph(1);
    after.run.toggles = off;
    model.pySet("graph", after);
    model.pySet("pending", off);
    click(q(el, '[data-action="clear-toggles"]'));
    expect(rerunButton(el).textContent).toBe("Re-run with 1 change");
  });
});

function withLeafDtype(dtype: string): WireGraph {
  const g = whatIfGraph();
  const leaf = g.nodes.find((n) => n.id === LEAF)?.leaf;
  if (!leaf) throw new Error("no leaf in the fixture");
  leaf.dtype = dtype;
  return g;
}

describe("requires_grad of an integer leaf", () => {
  it("is not offered: its dtype and why, in the panel and the inspector", () => {
    const shown: Record<string, string> = { int64: "an int64", bool: "a bool", uint8: "a uint8" };
    for (const dtype of ["int64", "bool", "uint8"]) {
      const { el } = mount(withLeafDtype(dtype));
      expect(leafBox(el, "input1"), dtype).toBeNull();
      const cell = q(el, `[data-gradsight="toggles"] [data-no-toggle="${dtype}"]`);
      expect(cell.textContent).toBe(dtype);
      expect(cell.getAttribute("title")).toContain(NO_GRAD_DTYPE);
      expect(leafBox(el, FROZEN), "a leaf outside the graph (dtype unknown) keeps its box").not.toBeNull();
      click(nodeEl(el, LEAF));
      expect(inspector(el).querySelector('input[data-scope-toggle="requires-grad"]')).toBeNull();
      expect(q(inspector(el), "[data-no-toggle]").textContent).toContain(`not for ${shown[dtype]} tensor`);
    }
  });

  it("is not offered for a tensor outside the graph whose control says it is an integer", () => {
    // An integer input no op differentiates is no node: only its control entry carries its dtype.
    const g = whatIfGraph();
    const frozen = g.controls.leaves.find((l) => l.name === FROZEN);
    if (!frozen) throw new Error("no frozen leaf in the fixture");
    frozen.dtype = "int64";
    const { el } = mount(g);
    expect(leafBox(el, FROZEN)).toBeNull();
    expect(q(el, '[data-gradsight="toggles"] [data-no-toggle="int64"]').textContent).toBe("int64");
    expect(leafBox(el, "input1"), "the float leaf keeps its box").not.toBeNull();
  });

  it("is offered for floating-point and complex leaves", () => {
    for (const dtype of ["float32", "float16", "bfloat16", "float64", "float8_e4m3fn", "complex64"]) {
      expect(canRequireGrad(dtype), dtype).toBe(true);
      const { el } = mount(withLeafDtype(dtype));
      expect(leafBox(el, "input1"), dtype).not.toBeNull();
      click(nodeEl(el, LEAF));
      expect(inspector(el).querySelector('input[data-scope-toggle="requires-grad"]'), dtype).not.toBeNull();
    }
    for (const dtype of ["int8", "int64", "bool", "uint16", "qint8"]) expect(canRequireGrad(dtype), dtype).toBe(false);
  });
});
