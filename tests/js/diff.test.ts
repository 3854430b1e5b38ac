// @vitest-environment jsdom
// Comparing runs in the view: the diff panel (loss, lost / gained gradients, removed and added
// nodes, grad-norm ratios, saved bytes), the history selects writing `current` and `baseline`,
// the inspector's "why is .grad None" section and the missing-gradient list asking Python `why`.

import { isBigChange, normRatio } from "../../js/diff-view";
import { inspectOk } from "./inspect-fixtures";
import { click, inspector, mount, nodeEl, q, useMountedViews } from "./mount";
import { ADD, diff, FROZEN, history, LEAF, MUL, SIN, whatIfGraph, why } from "./whatif-fixtures";

useMountedViews();

const diffPanel = (el: HTMLElement): HTMLElement => q(el, '[data-gradsight="diff"]');
const items = (el: HTMLElement, kind: string): string[] =>
  [...q(diffPanel(el), `[data-diff="${kind}"]`).querySelectorAll("li")].map((li) => li.textContent ?? "");

describe("diff", () => {
  it("is hidden while there is nothing to compare", () => {
    const { el } = mount(whatIfGraph());
    expect(diffPanel(el).hidden).toBe(true);
    expect(el.querySelector(".gs-added")).toBeNull();
  });

  it("shows the loss, lost and gained gradients, removed nodes and saved bytes", () => {
    const { el } = mount(whatIfGraph(1), { diff: diff(), history: history() });
    expect(diffPanel(el).hidden).toBe(false);
    expect(q(diffPanel(el), '[data-diff="loss"]').textContent).toBe("loss 0.25 → 0.5");
    expect(items(el, "lost-grad")).toEqual(["layer2.weight", "layer2.bias"]);
    expect(items(el, "gained-grad")).toEqual(["input1"]);
    expect(items(el, "removed")).toEqual(["ReluBackward0 layer2"]);
    expect(q(diffPanel(el), '[data-diff="saved-bytes"]').textContent).toBe("saved for backward 2 KiB → 1 KiB");
    expect(q(diffPanel(el), '[data-diff="added"]').getAttribute("data-count")).toBe("2");
    expect(q(diffPanel(el), '[data-diff="runs"]').textContent).toBe(
      "run #1 (layer2.requires_grad=False) compared with run #0 (first run)",
    );
    // Removed nodes are not in the graph: nothing there claims to select them.
    expect(q(diffPanel(el), '[data-diff="removed"]').querySelector("[data-node-id], [data-goto-node]")).toBeNull();
  });

  it("marks the added nodes on the graph, and only for the run they were added in", () => {
    const { el, model } = mount(whatIfGraph(1), { diff: diff() });
    expect([...el.querySelectorAll(".gs-node.gs-added")].map((n) => n.getAttribute("data-node-id"))).toEqual([
      MUL,
      LEAF,
    ]);
    expect(nodeEl(el, MUL).getAttribute("data-added")).toBe("true");
    expect(nodeEl(el, ADD).classList.contains("gs-added")).toBe(false);
    model.pySet("graph", whatIfGraph(0));
    expect(el.querySelector(".gs-added")).toBeNull();
    model.pySet("graph", whatIfGraph(1));
    expect(el.querySelectorAll(".gs-added")).toHaveLength(2);
    model.pySet("diff", null);
    expect(el.querySelector(".gs-added")).toBeNull();
    expect(diffPanel(el).hidden).toBe(true);
  });

  it("tabulates grad norms, biggest changes first and highlighted", () => {
    const { el } = mount(whatIfGraph(1), { diff: diff() });
    const rows = [...q(diffPanel(el), '[data-diff="grad-norms"]').querySelectorAll("tbody tr")];
    const cells = rows.map((r) => [...r.children].map((c) => c.textContent));
    expect(cells).toEqual([
      ["layer2.weight", "2", "—", "gone"],
      ["w", "1", "100", "×100"],
      ["layer2.bias", "0.1", "0.2", "×2"],
      ["input1", "1", "1.5", "×1.5"],
    ]);
    expect(rows.map((r) => r.getAttribute("data-big"))).toEqual(["true", "true", null, null]);
  });

  it("computes ratios for gradients that appeared, vanished or were zero", () => {
    expect(normRatio(null, null)).toBeNull();
    expect(normRatio(null, 2)).toBe(Infinity);
    expect(normRatio(2, null)).toBe(0);
    expect(normRatio(0, 0)).toBe(1);
    expect(normRatio(0, 3)).toBe(Infinity);
    expect(normRatio(2, 1)).toBe(0.5);
    expect(isBigChange(0.1)).toBe(true);
    expect(isBigChange(0.5)).toBe(false);
    expect(isBigChange(null)).toBe(false);
    expect(Number.isNaN(normRatio(2, Number.NaN))).toBe(true); // a gradient that became NaN is not "gone"
    expect(Number.isNaN(normRatio(2, Number.POSITIVE_INFINITY))).toBe(true);
    expect(isBigChange(Number.NaN)).toBe(true);
  });

  it("reports a malformed diff and keeps the graph", () => {
    const { el } = mount(whatIfGraph(1), { diff: { before: 0 } });
    expect(q(el, '[data-gradsight="error"]').textContent).toContain("diff.saved_bytes should be an object");
    expect(el.querySelectorAll(".gs-node")).toHaveLength(4);
  });

  it("Stop comparing writes baseline -1", () => {
    const { el, model } = mount(whatIfGraph(1), { diff: diff(), baseline: 0 });
    q(diffPanel(el), '[data-action="close-diff"]').click();
    expect(model.set).toHaveBeenLastCalledWith("baseline", -1);
    expect(model.save_changes).toHaveBeenCalled();
  });
});

describe("history", () => {
  it("is hidden with fewer than two runs", () => {
    const { el, model } = mount(whatIfGraph());
    expect(q(el, '[data-gradsight="history"]').hidden).toBe(true);
    model.pySet("history", history().slice(0, 1));
    expect(q(el, '[data-gradsight="history"]').hidden).toBe(true);
  });

  it("lists the runs newest first with their loss, and writes current and baseline", () => {
    const { el, model } = mount(whatIfGraph(1), { history: history(), current: 1 });
    const bar = q(el, '[data-gradsight="history"]');
    expect(bar.hidden).toBe(false);
    expect(q(el, ".gs-toolbar").contains(bar)).toBe(true);
    const current = q<HTMLSelectElement>(bar, 'select[data-action="current"]');
    expect([...current.options].map((o) => o.textContent)).toEqual([
      "#2 whole step under no_grad · raised an error",
      "#1 layer2.requires_grad=False · loss 0.5",
      "#0 first run · loss 0.25",
    ]);
    expect(current.value).toBe("1");
    current.value = "0";
    current.dispatchEvent(new Event("change", { bubbles: true }));
    expect(model.set).toHaveBeenLastCalledWith("current", 0);
    const baseline = q<HTMLSelectElement>(bar, 'select[data-action="baseline"]');
    expect(baseline.value).toBe("-1");
    baseline.value = "2";
    baseline.dispatchEvent(new Event("change", { bubbles: true }));
    expect(model.set).toHaveBeenLastCalledWith("baseline", 2);
    expect(model.save_changes).toHaveBeenCalledTimes(2);
    model.pySet("baseline", -1);
    expect(baseline.value).toBe("-1");
  });
});

describe("why a leaf has no gradient", () => {
  it("shows the inspect reply's why, and its link selects the node where the path breaks", () => {
    const { el, model } = mount(whatIfGraph());
    model.pySet("selected", LEAF);
    model.pySend({ ...inspectOk(model.lastSent("inspect"), []), why: why("input1", { reason: "detach" }) });
    const section = q(inspector(el), '[data-section="why"]');
    expect(q(section, '[data-why="message"]').textContent).toBe(
      "input1 has requires_grad=False, so autograd never recorded it",
    );
    expect(q(section, '[data-why="reason"]').textContent).toBe("the path was detached (detach)");
    expect(q(section, '[data-why="source"]').textContent).toBe("model.py:12  h = self.frozen(x)");
    click(q(section, `button[data-goto-node="${SIN}"]`));
    expect(model.set).toHaveBeenLastCalledWith("selected", SIN);
    expect(nodeEl(el, SIN).classList.contains("gs-selected")).toBe(true);
  });

  it("a where that is not a node of this graph is shown as text, and a zero gradient says so", () => {
    const { el, model } = mount(whatIfGraph());
    model.pySet("selected", LEAF);
    model.pySend({
      ...inspectOk(model.lastSent("inspect"), []),
      why: why("input1", { reason: "zero", where: "gone#0" }),
    });
    const section = q(inspector(el), '[data-section="why"]');
    expect(section.querySelector("h4")?.textContent).toBe("Why the gradient is zero");
    expect(section.querySelector("[data-node-id], [data-goto-node]")).toBeNull();
    expect(q(section, '[data-why="where"]').textContent).toBe("gone#0");
  });

  it("a NaN / Inf gradient says where it became non-finite", () => {
    const { el, model } = mount(whatIfGraph());
    model.pySet("selected", LEAF);
    model.pySend({
      ...inspectOk(model.lastSent("inspect"), []),
      why: why("input1", { reason: "nonfinite", where: SIN, message: "it became non-finite in SinBackward0" }),
    });
    const section = q(inspector(el), '[data-section="why"]');
    expect(section.querySelector("h4")?.textContent).toBe("Where the gradient became NaN / Inf");
    expect(q(section, '[data-why="reason"]').textContent).toBe("the gradient has NaN or Inf (nonfinite)");
    expect(section.querySelector(`button[data-goto-node="${SIN}"]`)).not.toBeNull();
  });

  it("lists graph.missing; a click asks Python why and shows the answer in place", () => {
    const { el, model } = mount(whatIfGraph());
    const panel = q(el, '[data-gradsight="missing"]');
    expect(panel.hidden).toBe(false);
    const item = q(panel, `[data-missing="${FROZEN}"]`);
    expect(item.textContent).toContain("has requires_grad=False");
    click(q(item, "button"));
    expect(model.lastSent("why")).toMatchObject({ type: "why", leaf: FROZEN });
    expect(item.getAttribute("data-why-status")).toBe("loading");
    model.pyReply("why", { why: why(FROZEN, { message: "frozen by you in cell 4", where: MUL }) });
    expect(item.getAttribute("data-why-status")).toBe("done");
    expect(q(item, '[data-why="message"]').textContent).toBe("frozen by you in cell 4");
    click(q(item, `button[data-goto-node="${MUL}"]`));
    expect(model.set).toHaveBeenLastCalledWith("selected", MUL);
    expect(model.sent().filter((m) => m.type === "why")).toHaveLength(1);
  });

  it("shows a failed or malformed why reply", () => {
    const { el, model } = mount(whatIfGraph());
    const item = q(el, `[data-missing="${FROZEN}"]`);
    click(item);
    model.pyReply("why", { ok: false, error: "no leaf named encoder.frozen" });
    expect(q(item, "[data-why-error]").textContent).toBe("no leaf named encoder.frozen");
    click(item);
    model.pyReply("why", { why: { name: FROZEN } });
    expect(q(item, "[data-why-error]").textContent).toContain("why.reason should be a string");
  });

  it("is hidden when every leaf got its gradient", () => {
    const g = whatIfGraph();
    g.missing = [];
    const { el } = mount(g);
    expect(q(el, '[data-gradsight="missing"]').hidden).toBe(true);
  });
});
