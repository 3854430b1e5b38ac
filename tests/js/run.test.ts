// @vitest-environment jsdom
// Graph schema v2 in the view: executed / pruned nodes, opaque kinds, grad norms, the run banner,
// and live updates (same structure, new values after each training step).

import { gradWeight } from "../../js/node-draw";
import { OPAQUE_TEXT } from "../../js/node-label";
import type { WireGraph, WireRun } from "../../js/wire";
import { ADD, LEAF, MUL, node, runInfo, SIN, sampleGraph, tensor } from "./fixtures";
import { f32, inspectOk, preview, view } from "./inspect-fixtures";
import { click, inspector, mount, nodeEl, q, unmountAll } from "./mount";

beforeEach(() => {
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
});

afterEach(() => {
  unmountAll();
  vi.restoreAllMocks();
});

/** The sample graph after a backward run by gradsight: every node executed, with grad norms. */
function ranGraph(run: Partial<WireRun> = {}): WireGraph {
  const g = sampleGraph();
  g.run = runInfo({ mode: "runnable", root_gradient: "scalar", loss: 0.123456, ...run });
  const norms = [1, 2, 0.002, 2];
  g.nodes.forEach((n, i) => {
    n.executed = true;
    n.grad_norm = norms[i] ?? null;
  });
  return g;
}

describe("executed and pruned nodes", () => {
  it("dims nodes backward did not run, and says why in the inspector", () => {
    const g = ranGraph();
    const mul = g.nodes[1];
    if (mul) mul.executed = false;
    const sin = g.nodes[2];
    if (sin) sin.executed = null;
    const { el, model } = mount(g);
    expect(nodeEl(el, MUL).classList.contains("gs-not-executed")).toBe(true);
    expect(nodeEl(el, MUL).getAttribute("data-executed")).toBe("false");
    expect(nodeEl(el, MUL).getAttribute("aria-label")).toContain("not executed in the last backward");
    expect(nodeEl(el, ADD).getAttribute("data-executed")).toBe("true");
    expect(nodeEl(el, ADD).classList.contains("gs-not-executed")).toBe(false);
    expect(nodeEl(el, SIN).hasAttribute("data-executed")).toBe(false);
    model.pySet("selected", MUL);
    expect(q(inspector(el), '[data-executed-note="false"]').textContent).toBe(
      "not executed in the last backward (pruned: not on the path to what backward differentiated)",
    );
    model.pySet("selected", ADD);
    expect(inspector(el).querySelector("[data-executed-note]")).toBeNull();
  });
});

describe("opaque nodes", () => {
  it.each(Object.entries(OPAQUE_TEXT))("shows what a %s node hides", (kind, text) => {
    const g = sampleGraph();
    const mul = g.nodes[1];
    if (mul) {
      mul.kind = "opaque";
      mul.opaque_kind = kind as keyof typeof OPAQUE_TEXT;
    }
    const { el, model } = mount(g);
    const lines = [...nodeEl(el, MUL).querySelectorAll("text")].map((t) => t.textContent);
    expect(lines).toContain(text);
    expect(q(nodeEl(el, MUL), ".gs-label-opaque").textContent).toBe(text);
    model.pySet("selected", MUL);
    expect(q(inspector(el), `[data-opaque-kind="${kind}"]`).textContent).toBe(text);
  });

  it.each([
    ["compiled", "torch.compile region"],
    ["checkpoint", "checkpoint (reentrant)"],
    ["custom", "custom autograd.Function"],
    ["backward-hook", "module backward hook"],
  ])("words %s as %s", (kind, text) => {
    expect(OPAQUE_TEXT[kind as keyof typeof OPAQUE_TEXT]).toBe(text);
  });
});

describe("grad norms", () => {
  it("weighs each node's bar on a log scale against the graph's largest norm", () => {
    const { el, model } = mount(ranGraph());
    expect(nodeEl(el, MUL).getAttribute("data-grad-weight")).toBe("1.00");
    expect(nodeEl(el, ADD).getAttribute("data-grad-weight")).toBe("0.95");
    expect(nodeEl(el, SIN).getAttribute("data-grad-weight")).toBe("0.50");
    expect(nodeEl(el, SIN).getAttribute("data-grad-norm")).toBe("0.002");
    const bar = (id: string): number => Number(q(nodeEl(el, id), ".gs-norm-bar").getAttribute("width"));
    expect(bar(MUL)).toBeGreaterThan(bar(SIN));
    expect(bar(SIN)).toBeGreaterThan(0);
    model.pySet("selected", SIN);
    expect(q(inspector(el), '[data-section="header"] [data-field="grad_norm"]').textContent).toBe("0.002");
  });

  it("draws no bar where the norm is unknown", () => {
    const { el, model } = mount();
    expect(el.querySelector(".gs-norm-bar")).toBeNull();
    expect(nodeEl(el, ADD).hasAttribute("data-grad-norm")).toBe(false);
    model.pySet("selected", ADD);
    expect(inspector(el).querySelector('[data-field="grad_norm"]')).toBeNull();
  });

  it("maps norms to weights", () => {
    expect(gradWeight(null, 5)).toBeNull();
    expect(gradWeight(5, 5)).toBe(1);
    expect(gradWeight(0, 5)).toBe(0);
    expect(gradWeight(5e-7, 5)).toBe(0);
    expect(gradWeight(0.5, 5)).toBeCloseTo(5 / 6);
  });
});

describe("run banner", () => {
  const banner = (el: HTMLElement): HTMLElement => q(el, '[data-gradsight="run"]');
  const part = (el: HTMLElement, name: string): HTMLElement => q(banner(el), `[data-run="${name}"]`);

  it("is hidden for a plain tensor graph", () => {
    const { el } = mount();
    expect(banner(el).hidden).toBe(true);
  });

  it("shows the loss and that backward started from it", () => {
    const { el } = mount(ranGraph());
    expect(banner(el).hidden).toBe(false);
    expect(banner(el).getAttribute("data-run-mode")).toBe("runnable");
    expect(part(el, "mode").textContent).toBe("runnable debugger");
    expect(part(el, "loss").textContent).toBe("loss 0.1235");
    expect(part(el, "root-gradient").textContent).toBe("backward from the scalar loss");
    expect(part(el, "step").hidden).toBe(true);
    expect(part(el, "memory").hidden).toBe(true);
    expect(part(el, "errors").hidden).toBe(true);
  });

  it.each([
    ["ones", "no loss given: backward from torch.ones_like(output), a vector–Jacobian product with v = 1"],
    ["grad_output", "backward from your grad_output (vector–Jacobian product)"],
  ] as const)("words the root gradient %s", (rootGradient, text) => {
    const { el } = mount(ranGraph({ mode: "cell", root_gradient: rootGradient, loss: null }));
    expect(part(el, "root-gradient").textContent).toBe(text);
    expect(part(el, "loss").hidden).toBe(true);
    expect(part(el, "mode").textContent).toBe("%%gradsight cell");
  });

  it("shows the step, the memory budget, what went past it, and hook errors", () => {
    const { el, model } = mount(
      ranGraph({
        mode: "live",
        step: 3,
        kept_bytes: 1536,
        budget_bytes: 256 * 1024 * 1024,
        dropped: 4,
        errors: ["RuntimeError: boom in a prehook", "ValueError: x"],
      }),
    );
    expect(part(el, "step").textContent).toBe("step 3");
    expect(part(el, "memory").textContent).toBe(
      "kept 1.5 KiB of 256 MiB budget · 4 tensors past the memory budget: statistics only",
    );
    expect(part(el, "memory").classList.contains("gs-run-dropped")).toBe(true);
    expect(part(el, "errors").textContent).toBe(
      "gradsight's hooks hit errors (your backward was not affected): RuntimeError: boom in a prehook; ValueError: x",
    );
    model.pySet("graph", ranGraph({ mode: "live", step: 4, kept_bytes: 10, budget_bytes: 100, dropped: 1 }));
    expect(part(el, "step").textContent).toBe("step 4");
    expect(part(el, "memory").textContent).toBe(
      "kept 10 B of 100 B budget · 1 tensor past the memory budget: statistics only",
    );
    expect(part(el, "errors").hidden).toBe(true);
    model.pySet("graph", {});
    expect(banner(el).hidden).toBe(true);
  });
});

describe("live updates", () => {
  it("restyles the same structure in place, keeps the selection and asks Python again", () => {
    const { el, model } = mount(ranGraph({ mode: "live", step: 1 }));
    click(nodeEl(el, SIN));
    const first = model.lastSent("inspect");
    const sinEl = nodeEl(el, SIN);
    const next = ranGraph({ mode: "live", step: 2 });
    const mul = next.nodes[1];
    if (mul) mul.executed = false;
    const sin = next.nodes[2];
    if (sin) sin.grad_in = [tensor([25], { nan_count: 1 })];
    model.pySet("graph", next);
    expect(nodeEl(el, SIN)).toBe(sinEl);
    expect(sinEl.classList.contains("gs-selected")).toBe(true);
    expect(sinEl.classList.contains("gs-nonfinite")).toBe(true);
    expect(nodeEl(el, MUL).classList.contains("gs-not-executed")).toBe(true);
    const second = model.lastSent("inspect");
    expect(second.node).toBe(SIN);
    expect(second.request_id).not.toBe(first.request_id);
    expect(inspector(el).getAttribute("data-inspect-status")).toBe("loading");
    model.pySend(inspectOk(first, [view("saved:_saved_self")]));
    expect(inspector(el).querySelector("[data-tensor-key]")).toBeNull();
    model.pySend(inspectOk(second, [view("saved:_saved_self")]));
    expect(inspector(el).getAttribute("data-inspect-status")).toBe("done");
  });

  it("keeps a view the user has zoomed, and re-fits one they have not", () => {
    const { el, model } = mount(ranGraph({ mode: "live" }));
    const viewport = q(el, ".gs-viewport");
    const transform = (): string | null => viewport.getAttribute("transform");
    const grown = (): WireGraph => {
      const g = ranGraph({ mode: "live" });
      g.nodes.push(node("ExpBackward0#0"));
      const leaf = g.nodes[3];
      if (leaf) leaf.next = [];
      const add = g.nodes[0];
      if (add)
        add.next = [
          [MUL, 0],
          ["ExpBackward0#0", 0],
        ];
      return g;
    };
    const fitted = transform();
    model.pySet("graph", grown());
    expect(transform()).not.toBe(fitted);
    model.pySet("graph", ranGraph({ mode: "live" }));
    expect(transform()).toBe(fitted);
    q(el, '[data-action="zoom-in"]').click();
    const zoomed = transform();
    model.pySet("graph", grown());
    expect(el.querySelectorAll(".gs-node")).toHaveLength(5);
    expect(transform()).toBe(zoomed);
  });

  it("keeps the slice the user chose and the focused input across updates", () => {
    const nd = { shape: [4, 5], full_shape: [2, 3, 4, 5], index: [0, 0], block: [1, 1] };
    const values = [f32(Array.from({ length: 20 }, (_, i) => i))];
    const { el, model } = mount(ranGraph({ mode: "live" }));
    model.pySet("selected", LEAF);
    const answer = (): void =>
      model.pySend(inspectOk(model.lastSent("inspect"), [view("leaf:grad", { preview: preview(nd) })]), values);
    answer();
    const dim1 = q<HTMLInputElement>(inspector(el), '[data-slice-dim="1"]');
    dim1.value = "2";
    dim1.dispatchEvent(new Event("change", { bubbles: true }));
    dim1.focus();
    const sent = model.sent().length;
    model.pySet("graph", ranGraph({ mode: "live", step: 2 }));
    answer();
    const again = model.sent().slice(sent);
    expect(again.map((m) => m.type)).toEqual(["inspect", "values"]);
    expect(again[1]).toMatchObject({ node: LEAF, key: "leaf:grad", index: [0, 2] });
    expect(q<HTMLInputElement>(inspector(el), '[data-slice-dim="1"]').value).toBe("2");
    expect(document.activeElement?.getAttribute("data-slice-dim")).toBe("1");
    // A different node starts from its own default slices.
    model.pySet("selected", SIN);
    answer();
    expect(model.sent().at(-1)?.type).toBe("inspect");
  });
});
