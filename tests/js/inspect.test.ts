// @vitest-environment jsdom
// The lazy inspector: selecting a node asks Python (`inspect`, with a request_id), the reply fills
// the skeleton with statistics and histograms; stale, failed, malformed and missing replies.

import { LOST_TEXT } from "../../js/connection";
import { histogramView } from "../../js/histogram";
import widget from "../../js/widget";
import { fakeModel } from "./fake-model";
import { ADD, LEAF, MUL, SIN, sampleGraph, tensor } from "./fixtures";
import { histogram, inspectOk, replyError, view } from "./inspect-fixtures";
import { click, inspector, mount, nodeEl, q, useMountedViews } from "./mount";

useMountedViews();

const status = (el: HTMLElement): string | null => inspector(el).getAttribute("data-inspect-status");

describe("inspect requests", () => {
  it("selecting a node sends one inspect request with a unique request_id", () => {
    const { el, model } = mount();
    click(nodeEl(el, SIN));
    const first = model.lastSent("inspect");
    expect(first).toMatchObject({ type: "inspect", node: SIN });
    expect(typeof first.request_id).toBe("string");
    expect(first.request_id).not.toBe("");
    expect(model.sent().filter((m) => m.type === "inspect")).toHaveLength(1);
    // The skeleton is there at once, marked as loading.
    expect(q(inspector(el), '[data-saved-name="_saved_self"]').textContent).toContain("(25,)");
    expect(status(el)).toBe("loading");
    expect(q(inspector(el), '[data-inspect-status="loading"]').textContent).toContain("loading");

    nodeEl(el, MUL).dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    model.pySet("selected", LEAF);
    const requests = model.sent().filter((m) => m.type === "inspect");
    expect(requests.map((m) => m.node)).toEqual([SIN, MUL, LEAF]);
    expect(new Set(requests.map((m) => m.request_id)).size).toBe(3);
  });

  it("sends nothing when nothing (or an unknown node) is selected", () => {
    const { el, model } = mount(sampleGraph(), { selected: "nope" });
    model.pySet("selected", "");
    expect(model.sent()).toEqual([]);
    expect(status(el)).toBeNull();
  });
});

describe("inspect replies", () => {
  it("a matching reply enriches the saved entry with full statistics and a histogram", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    const summary = tensor([25], { std: 0.61, freed: true, note: null });
    model.pySend(inspectOk(model.lastSent("inspect"), [view("saved:_saved_self", { summary })]));
    const entry = q(inspector(el), '[data-section="saved"] [data-tensor-key="saved:_saved_self"]');
    expect(entry.getAttribute("data-saved-name")).toBe("_saved_self");
    // Enriched in place: still one entry for the name, with its name shown once.
    expect(inspector(el).querySelectorAll('[data-saved-name="_saved_self"]')).toHaveLength(1);
    expect(entry.querySelectorAll(".gs-saved-name")).toHaveLength(1);
    expect(q(entry, '[data-stat="std"]').textContent).toBe("0.61");
    expect(q(entry, '[data-stat="NaN"]').textContent).toBe("0");
    const hist = q(entry, "[data-histogram]");
    expect(hist.querySelectorAll("rect.gs-hist-bar")).toHaveLength(6);
    expect(q(hist, '[data-hist="min"]').textContent).toBe("-0.98");
    expect(q(hist, '[data-hist="max"]').textContent).toBe("0.99");
    expect(q(hist, '[data-hist-count="nan"]').textContent).toBe("NaN 0");
    expect(status(el)).toBe("done");
    expect(q<HTMLElement>(inspector(el), '[data-inspect-status="done"]').hidden).toBe(true);
  });

  it("ignores replies with an unknown or stale request_id", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    const stale = model.lastSent("inspect");
    model.pySet("selected", MUL);
    const current = model.lastSent("inspect");
    model.pySend(inspectOk(stale, [view("saved:_saved_self")]));
    model.pySend({ ...inspectOk(current, [view("saved:_saved_other")]), request_id: "someone-else-1" });
    expect(inspector(el).getAttribute("data-node")).toBe(MUL);
    expect(inspector(el).querySelector("[data-tensor-key]")).toBeNull();
    expect(status(el)).toBe("loading");
    model.pySend(inspectOk(current, [view("saved:_saved_other")]));
    expect(status(el)).toBe("done");
    expect(inspector(el).querySelector('[data-tensor-key="saved:_saved_other"]')).not.toBeNull();
    // Answered already: the same reply again changes nothing and throws nothing.
    model.pySend(inspectOk(current, []));
    expect(status(el)).toBe("done");
  });

  it("shows Python's error (ok: false) in the inspector", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    model.pySend(replyError(model.lastSent("inspect"), "node SinBackward0#0 is not in the latest graph"));
    expect(status(el)).toBe("error");
    const line = q(inspector(el), '[data-inspect-status="error"]');
    expect(line.textContent).toBe("node SinBackward0#0 is not in the latest graph");
    // The skeleton stays useful.
    expect(q(inspector(el), '[data-saved-name="_saved_self"]').textContent).toContain("float32");
  });

  it.each([
    ["a body that fails the guard", { tensors: "nope" }, "inspection.tensors should be an array"],
    ["no ok flag", { ok: "yes" }, "`ok` should be true or false"],
    ["a reply about another node", { node: MUL }, "not SinBackward0#0"],
    ["a wrong type", { type: "values" }, 'type "values", expected "inspect"'],
    [
      "a preview whose buffer is missing",
      {
        tensors: [
          view("saved:_saved_self", {
            preview: { dtype: "float32", shape: [5], full_shape: [5], index: [], block: [1], buffer: 0 },
          }),
        ],
      },
      "buffer 0 is missing",
    ],
  ])("shows a malformed reply (%s) as an error, without throwing", (_name, patch, text) => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    const reply = { ...inspectOk(model.lastSent("inspect"), []), ...patch };
    expect(() => model.pySend(reply)).not.toThrow();
    expect(status(el)).toBe("error");
    expect(q(inspector(el), '[data-inspect-status="error"]').textContent).toContain(text);
    expect(q(el, '[data-gradsight="error"]').hidden).toBe(true);
  });

  it("ignores messages that are not replies", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    for (const msg of [null, "text", [1, 2], { type: "inspect" }, { request_id: 7 }]) {
      expect(() => model.pySend(msg)).not.toThrow();
    }
    expect(status(el)).toBe("loading");
  });

  it("times out after 30 s with an error line; a late reply is ignored", () => {
    vi.useFakeTimers();
    const { el, model } = mount();
    model.pySet("selected", SIN);
    vi.advanceTimersByTime(29_000);
    expect(status(el)).toBe("loading");
    vi.advanceTimersByTime(1_000);
    expect(status(el)).toBe("error");
    expect(q(inspector(el), '[data-inspect-status="error"]').textContent).toContain("no answer from Python after 30 s");
    model.pySend(inspectOk(model.lastSent("inspect"), [view("saved:_saved_self")]));
    expect(status(el)).toBe("error");
    expect(inspector(el).querySelector("[data-histogram]")).toBeNull();
  });

  it("retries when the node is selected again after an error, as the error line says", () => {
    vi.useFakeTimers();
    const { el, model } = mount();
    click(nodeEl(el, SIN));
    vi.advanceTimersByTime(30_001);
    expect(status(el)).toBe("error");
    const before = model.sent().filter((m) => m.type === "inspect").length;
    click(nodeEl(el, SIN)); // the same node: a real model fires no change:selected for it
    expect(model.sent().filter((m) => m.type === "inspect").length).toBe(before + 1);
    expect(status(el)).toBe("loading");
  });

  it("says a leaf passes no gradient on under grad-out, not that no gradient was recorded", () => {
    const { el, model } = mount();
    model.pySet("selected", LEAF);
    const gradOut = q(inspector(el), '[data-section="grad-out"]');
    expect(gradOut.textContent).toContain("a leaf passes no gradient on");
    expect(gradOut.textContent).not.toContain("no gradient recorded");
    model.pySet("selected", SIN);
    expect(q(inspector(el), '[data-section="grad-out"]').textContent).toContain("no gradient recorded");
  });

  it("puts gradients under grad-in / grad-out, replacing the 'no gradient' hint", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    expect(q(inspector(el), '[data-section="grad-in"]').textContent).toContain("no gradient recorded");
    model.pySend(
      inspectOk(model.lastSent("inspect"), [
        view("grad-in:0", { name: "grad_in[0]", summary: tensor([25], { norm: 1.5 }) }),
        view("grad-out:0", { name: "grad_out[0]", summary: tensor([25], { norm: 0.25 }), histogram: null }),
      ]),
    );
    const gradIn = q(inspector(el), '[data-section="grad-in"]');
    expect(gradIn.textContent).not.toContain("no gradient recorded");
    expect(q(gradIn, '[data-tensor-key="grad-in:0"] [data-stat="norm"]').textContent).toBe("1.5");
    expect(q(gradIn, '[data-tensor-key="grad-in:0"]').getAttribute("data-index")).toBe("0");
    const gradOut = q(inspector(el), '[data-section="grad-out"]');
    expect(q(gradOut, '[data-tensor-key="grad-out:0"] [data-stat="norm"]').textContent).toBe("0.25");
    expect(gradOut.querySelector("[data-histogram]")).toBeNull();
  });

  it("fills skeleton gradients in place, without duplicating them", () => {
    const graph = sampleGraph();
    const sin = graph.nodes[2];
    if (sin) sin.grad_in = [tensor([25], { norm: 9 })];
    const { el, model } = mount(graph);
    model.pySet("selected", SIN);
    model.pySend(inspectOk(model.lastSent("inspect"), [view("grad-in:0", { summary: tensor([25], { norm: 2 }) })]));
    const entries = inspector(el).querySelectorAll('[data-section="grad-in"] .gs-grad');
    expect(entries).toHaveLength(1);
    expect(q(inspector(el), '[data-tensor-key="grad-in:0"] [data-stat="norm"]').textContent).toBe("2");
  });

  it("makes NaN / Inf prominent and marks the node", () => {
    const { el, model } = mount();
    model.pySet("selected", MUL);
    expect(nodeEl(el, MUL).classList.contains("gs-nonfinite")).toBe(false);
    const summary = tensor([25], { nan_count: 3, inf_count: 2, min: null, max: null, norm: null });
    model.pySend(
      inspectOk(model.lastSent("inspect"), [
        view("grad-in:0", { summary, histogram: histogram({ nan: 3, posinf: 2 }) }),
      ]),
    );
    const entry = q(inspector(el), '[data-tensor-key="grad-in:0"]');
    expect(q(entry, "[data-nonfinite-alert]").textContent).toBe("3 NaN and 2 Inf values");
    expect(q(entry, '[data-stat="NaN"]').classList.contains("gs-bad")).toBe(true);
    expect(q(entry, '[data-stat="Inf"]').textContent).toBe("2");
    expect(q(entry, '[data-hist-count="nan"]').classList.contains("gs-bad")).toBe(true);
    expect(q(entry, '[data-hist-count="posinf"]').textContent).toBe("+Inf 2");
    expect(nodeEl(el, MUL).classList.contains("gs-nonfinite")).toBe(true);
    expect(nodeEl(el, MUL).getAttribute("data-nonfinite")).toBe("true");
  });

  it("marks NaN / Inf seen through a non-finite norm even when they were not counted", () => {
    const graph = sampleGraph();
    const uncounted = tensor([25], { nan_count: null, inf_count: null, norm: null, nonfinite: true });
    const sin = graph.nodes[2];
    if (sin) sin.grad_in = [uncounted];
    const { el, model } = mount(graph);
    expect(nodeEl(el, SIN).classList.contains("gs-nonfinite")).toBe(true);
    expect(nodeEl(el, SIN).getAttribute("aria-label")).toContain("NaN or infinite values");
    model.pySet("selected", SIN);
    expect(q(inspector(el), '[data-section="grad-in"] [data-nonfinite-alert]').textContent).toBe(
      "NaN or Inf values (seen through a non-finite norm, not counted)",
    );
    model.pySet("selected", MUL);
    model.pySend(
      inspectOk(model.lastSent("inspect"), [view("saved:_saved_self", { summary: uncounted, kept: false })]),
    );
    expect(nodeEl(el, MUL).classList.contains("gs-nonfinite")).toBe(true);
  });

  it("says when values were not kept, and shows Python's note", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    model.pySend(
      inspectOk(model.lastSent("inspect"), [
        view("saved:_saved_self", { kept: false, histogram: null, note: null }),
        view("grad-in:0", { note: "sparse: densified for the preview" }),
      ]),
    );
    const saved = q(inspector(el), '[data-tensor-key="saved:_saved_self"]');
    expect(q(saved, "[data-not-kept]").textContent).toBe("values not kept (memory budget): statistics only");
    expect(q(saved, '[data-kept="false"]')).toBeTruthy();
    expect(saved.querySelector("[data-histogram]")).toBeNull();
    expect(q(inspector(el), '[data-tensor-key="grad-in:0"] [data-note]').textContent).toBe(
      "sparse: densified for the preview",
    );
  });

  it("fills tuple items and adds tensors the skeleton had no slot for", () => {
    const graph = sampleGraph();
    graph.nodes[1]?.saved.push({
      name: "_saved_indices",
      value: { type: "tuple", items: [{ type: "none" }, { type: "tensor", ...tensor([3]) }] },
    });
    const { el, model } = mount(graph);
    model.pySet("selected", MUL);
    model.pySend(
      inspectOk(model.lastSent("inspect"), [
        view("saved:_saved_indices[1]", { summary: tensor([3], { norm: 7 }) }),
        view("leaf:value", { name: "value" }),
      ]),
    );
    const item = q(inspector(el), '[data-saved-name="_saved_indices"] li[data-tensor-key="saved:_saved_indices[1]"]');
    expect(q(item, '[data-stat="norm"]').textContent).toBe("7");
    expect(inspector(el).querySelectorAll("[data-saved-name]")).toHaveLength(3);
    // A leaf section appears for a leaf tensor even on a node the skeleton had none for.
    expect(q(inspector(el), '[data-section="leaf"] [data-tensor-key="leaf:value"]')).toBeTruthy();
  });

  it("inserts reply text as text, never as HTML", () => {
    const evil = "<img src=x onerror=alert(1)>";
    const { el, model } = mount();
    model.pySet("selected", SIN);
    model.pySend(inspectOk(model.lastSent("inspect"), [view(`saved:${evil}`, { name: evil, note: evil })]));
    model.pySet("selected", MUL);
    model.pySend(replyError(model.lastSent("inspect"), evil));
    expect(el.querySelector("img")).toBeNull();
    expect(inspector(el).textContent).toContain(evil);
  });
});

describe("transport", () => {
  it("shows a failed send as an error", () => {
    const { el, model } = mount();
    model.send.mockImplementation(() => {
      throw new Error("comm closed");
    });
    model.pySet("selected", SIN);
    expect(q(inspector(el), '[data-inspect-status="error"]').textContent).toBe(
      `could not send the inspect request (comm closed): ${LOST_TEXT}`,
    );
  });

  it("accepts buffers as ArrayBuffers or typed arrays, as other front ends send them", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    const p = { dtype: "float32" as const, shape: [2], full_shape: [2], index: [], block: [1], buffer: 1 };
    const reply = inspectOk(model.lastSent("inspect"), [view("saved:_saved_self", { preview: p })]);
    const values = new Float32Array([1.5, -2]);
    model.pySend(reply, [new ArrayBuffer(0), values] as unknown as DataView[]);
    expect(status(el)).toBe("done");
    expect(q(inspector(el), "canvas[data-preview]").getAttribute("data-shape")).toBe("2");
  });
});

describe("leaf history", () => {
  it("shows how .grad accumulated across backward calls", () => {
    const { el, model } = mount();
    model.pySet("selected", ADD);
    model.pySend(inspectOk(model.lastSent("inspect"), []));
    expect(inspector(el).querySelector("[data-history]")).toBeNull();
    model.pySet("selected", LEAF);
    model.pySend(
      inspectOk(
        model.lastSent("inspect"),
        [view("leaf:grad", { name: ".grad" })],
        [
          { step: 1, received_norm: 0.5, grad_norm: 0.5 },
          { step: 2, received_norm: 0.25, grad_norm: 0.7 },
          { step: 3, received_norm: null, grad_norm: 0.7 },
        ],
      ),
    );
    const table = q(inspector(el), '[data-section="leaf"] [data-history]');
    expect(table.textContent).toContain("how .grad accumulates across backward calls");
    const rows = [...table.querySelectorAll("tbody tr")].map((r) =>
      [...r.querySelectorAll("td")].map((c) => c.textContent),
    );
    expect(rows).toEqual([
      ["1", "0.5", "0.5"],
      ["2", "0.25", "0.7"],
      ["3", "—", "0.7"],
    ]);
    expect(q(inspector(el), '[data-section="leaf"] [data-tensor-key="leaf:grad"] [data-histogram]')).toBeTruthy();
  });
});

describe("cleanup", () => {
  it("removes every listener, msg:custom included, and every pending timer", () => {
    vi.useFakeTimers();
    const model = fakeModel({ graph: sampleGraph() });
    const el = document.createElement("div");
    const cleanup = widget.render({ model, el });
    model.pySet("selected", SIN);
    expect(model.handlerCountOf("msg:custom")).toBe(1);
    expect(vi.getTimerCount()).toBe(1);
    cleanup();
    expect(model.handlerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    expect(() => model.pySend(inspectOk(model.lastSent("inspect"), []))).not.toThrow();
  });

  it("two views of one model each match only their own replies", () => {
    const model = fakeModel({ graph: sampleGraph() });
    const a = document.createElement("div");
    const b = document.createElement("div");
    const cleanA = widget.render({ model, el: a });
    const cleanB = widget.render({ model, el: b });
    model.pySet("selected", SIN);
    const [reqA, reqB] = model.sent();
    expect(reqA?.request_id).not.toBe(reqB?.request_id);
    if (!reqA) throw new Error("view A sent nothing");
    model.pySend(inspectOk(reqA, [view("saved:_saved_self")]));
    expect(inspector(a).getAttribute("data-inspect-status")).toBe("done");
    expect(inspector(b).getAttribute("data-inspect-status")).toBe("loading");
    cleanA();
    cleanB();
    expect(model.handlerCount()).toBe(0);
  });
});

describe("histogram bars", () => {
  it("labels every bin with finite edges even when max - min overflows a double", () => {
    const el = histogramView(histogram({ min: -1e308, max: 1.7e308, counts: [1, 0, 0, 2] }));
    const titles = [...el.querySelectorAll("rect.gs-hist-bar title")].map((t) => t.textContent ?? "");
    expect(titles).toHaveLength(4);
    for (const title of titles) {
      expect(title).not.toMatch(/nan|inf/i);
    }
    expect(titles[0]).toMatch(/^-1(\.0+)?e308 to /);
    expect(titles[3]).toMatch(/ to 1\.7(0*)e308: 2$/);
  });
});
