// @vitest-environment jsdom
// What-if debugging in the view: the toggles panel writes `pending`, the inspector's boxes mirror
// it, the re-run request (and its refusal while one runs), the elapsed clock, errors of a re-run,
// debuggers that cannot re-run, and cleanup of every listener and timer.

import { ELAPSED_TICK_MS } from "../../js/elapsed";
import { FAILED_TEXT, RUNNING_TEXT } from "../../js/whatif";
import { controls } from "./fixtures";
import { inspector, mount, nodeEl, q, unmountAll, useMountedViews } from "./mount";
import { FROZEN, LEAF, MUL, SIN, toggles, whatIfGraph } from "./whatif-fixtures";

useMountedViews();

const panel = (el: HTMLElement): HTMLElement => q(el, '[data-gradsight="toggles"]');
const box = (root: ParentNode, selector: string): HTMLInputElement => q<HTMLInputElement>(root, `input${selector}`);
const rerunButton = (el: HTMLElement): HTMLButtonElement => q<HTMLButtonElement>(el, '[data-action="rerun"]');
const lastPending = (m: ReturnType<typeof mount>["model"]): unknown => {
  const calls = m.set.mock.calls.filter((c) => c[0] === "pending");
  return calls[calls.length - 1]?.[1];
};

describe("toggles panel", () => {
  it("shows one requires_grad box per leaf, checked as the leaf is, leaves outside the graph greyed", () => {
    const { el } = mount(whatIfGraph());
    expect(panel(el).hidden).toBe(false);
    expect(box(panel(el), '[data-toggle="requires-grad"][data-leaf="input1"]').checked).toBe(true);
    const frozen = box(panel(el), `[data-toggle="requires-grad"][data-leaf="${FROZEN}"]`);
    expect(frozen.checked).toBe(false);
    const row = frozen.closest("tr");
    expect(row?.classList.contains("gs-not-in-graph")).toBe(true);
    expect(row?.textContent).toContain("not in graph");
    // Variables: detach; no requires_grad box unless they are leaves.
    expect(panel(el).querySelector('[data-scope-toggle="detach"][data-variable="out1"]')).not.toBeNull();
    expect(panel(el).querySelector('[data-toggle="requires-grad"][data-leaf="out1"]')).toBeNull();
    for (const kind of ["freeze", "no-grad", "inference-mode", "detach"]) {
      expect(panel(el).querySelector(`[data-scope-toggle="${kind}"][data-module="layer1"]`), kind).not.toBeNull();
    }
    expect(rerunButton(el).textContent).toBe("Re-run");
  });

  it("unchecking a leaf writes pending.requires_grad and saves", () => {
    const m = mount(whatIfGraph());
    box(panel(m.el), '[data-toggle="requires-grad"][data-leaf="input1"]').click();
    expect(lastPending(m.model)).toEqual(toggles({ requires_grad: { input1: false } }));
    expect(m.model.save_changes).toHaveBeenCalled();
    expect(rerunButton(m.el).textContent).toBe("Re-run with 1 change");
    const input = box(panel(m.el), '[data-toggle="requires-grad"][data-leaf="input1"]');
    expect(input.checked).toBe(false);
    expect(input.closest("tr")?.classList.contains("gs-pending")).toBe(true);
    expect(q(m.el, '[data-gradsight="pending"]').textContent).toBe("input1.requires_grad=False");
  });

  it("freezing a module writes requires_grad[module] = False", () => {
    const m = mount(whatIfGraph());
    box(panel(m.el), '[data-scope-toggle="freeze"][data-module="layer1"]').click();
    expect(lastPending(m.model)).toEqual(toggles({ requires_grad: { layer1: false } }));
    box(panel(m.el), '[data-scope-toggle="no-grad"][data-module="encoder"]').click();
    box(panel(m.el), '[data-scope-toggle="detach"][data-module="encoder.block"]').click();
    expect(lastPending(m.model)).toEqual(
      toggles({ requires_grad: { layer1: false }, no_grad: ["encoder"], detach: ["encoder.block"] }),
    );
    expect(rerunButton(m.el).textContent).toBe("Re-run with 3 changes");
  });

  it("[data-toggle=no-grad] is one element, the whole step's, and writes no_grad: true", () => {
    const m = mount(whatIfGraph());
    m.model.pySet("selected", MUL); // the inspector's module shortcuts must not add a second match
    expect(m.el.querySelectorAll('[data-toggle="no-grad"]')).toHaveLength(1);
    const first = q<HTMLInputElement>(m.el, '[data-toggle="no-grad"]');
    expect(first.hasAttribute("data-module")).toBe(false);
    expect(panel(m.el).contains(first)).toBe(true);
    first.click();
    expect(lastPending(m.model)).toEqual(toggles({ no_grad: true }));
    // Module boxes are covered by the whole step: checked and disabled.
    const module = box(panel(m.el), '[data-scope-toggle="no-grad"][data-module="layer1"]');
    expect(module.checked).toBe(true);
    expect(module.disabled).toBe(true);
    box(panel(m.el), '[data-toggle="inference-mode"]:not([data-module])').click();
    box(panel(m.el), '[data-toggle="apply"]').click();
    expect(lastPending(m.model)).toEqual(toggles({ no_grad: true, inference_mode: true, apply: true }));
  });

  it("follows pending from Python, and Clear writes the defaults", () => {
    const m = mount(whatIfGraph());
    m.model.pySet("pending", toggles({ requires_grad: { input1: false, [FROZEN]: true }, detach: ["out1"] }));
    expect(box(panel(m.el), '[data-toggle="requires-grad"][data-leaf="input1"]').checked).toBe(false);
    expect(box(panel(m.el), `[data-toggle="requires-grad"][data-leaf="${FROZEN}"]`).checked).toBe(true);
    expect(box(panel(m.el), '[data-scope-toggle="detach"][data-variable="out1"]').checked).toBe(true);
    expect(rerunButton(m.el).textContent).toBe("Re-run with 3 changes");
    expect(panel(m.el).querySelectorAll("tr.gs-pending")).toHaveLength(3);
    q(m.el, '[data-action="clear-toggles"]').click();
    expect(lastPending(m.model)).toEqual(toggles());
    expect(panel(m.el).querySelectorAll(".gs-pending")).toHaveLength(0);
    // Python reverting to its defaults after a re-run looks the same.
    m.model.pySet("pending", toggles({ apply: true }));
    expect(box(panel(m.el), '[data-toggle="apply"]').checked).toBe(true);
  });

  it("a malformed pending trait is reported, and the graph still shows", () => {
    const m = mount(whatIfGraph(), { pending: { requires_grad: { w: "no" } } });
    expect(q(m.el, '[data-gradsight="error"]').textContent).toContain("pending.requires_grad.w should be a boolean");
    expect(m.el.querySelectorAll(".gs-node")).toHaveLength(4);
  });

  it("the filter hides rows that do not match; the panel collapses but keeps the re-run button", () => {
    const { el, model } = mount(whatIfGraph());
    const filter = q<HTMLInputElement>(el, '[data-action="filter-toggles"]');
    filter.value = "ENC";
    filter.dispatchEvent(new Event("input", { bubbles: true }));
    const visible = [...panel(el).querySelectorAll<HTMLElement>("[data-filter-text]")]
      .filter((r) => !r.hidden)
      .map((r) => r.getAttribute("data-filter-text"));
    expect(visible).toEqual([FROZEN, "encoder", "encoder.block"]);
    const toggle = q(el, '[data-action="toggle-panel"]');
    toggle.click();
    expect(toggle.getAttribute("aria-expanded")).toBe("false");
    expect(q(el, "[data-toggles-body]").hidden).toBe(true);
    expect(rerunButton(el).hidden).toBe(false);
    // A new graph with the same controls (a live step) keeps the rows, the filter and the collapse.
    const row = q(panel(el), '[data-filter-text="encoder"]');
    model.pySet("graph", whatIfGraph());
    expect(q(panel(el), '[data-filter-text="encoder"]')).toBe(row);
    expect(filter.value).toBe("ENC");
    expect(q(panel(el), '[data-filter-text="input1"]').hidden).toBe(true);
    expect(q(el, "[data-toggles-body]").hidden).toBe(true);
    // New controls rebuild the rows, filtered as before.
    const more = whatIfGraph();
    more.controls.modules = [...more.controls.modules, "decoder"];
    model.pySet("graph", more);
    expect(q(panel(el), '[data-filter-text="decoder"]').hidden).toBe(true);
    expect(q(panel(el), '[data-filter-text="encoder"]').hidden).toBe(false);
  });

  it("shows the tree of modules named relative to their parent", () => {
    const { el } = mount(whatIfGraph());
    const names = [...panel(el).querySelectorAll('[data-toggles-group="modules"] tbody th')].map((th) => [
      th.textContent,
      th.getAttribute("style"),
    ]);
    expect(names).toEqual([
      ["(whole model)", "--gs-depth: 0"],
      ["layer1", "--gs-depth: 1"],
      ["encoder", "--gs-depth: 1"],
      ["block", "--gs-depth: 2"],
    ]);
  });

  it("inserts names as text", () => {
    const evil = "<img src=x onerror=alert(1)>";
    const g = whatIfGraph();
    g.controls = controls({
      rerun: true,
      leaves: [{ name: evil, requires_grad: true, in_graph: true, dtype: "float32" }],
      modules: [evil],
    });
    const { el } = mount(g);
    expect(el.querySelector("img")).toBeNull();
    expect(panel(el).textContent).toContain(evil);
  });
});

describe("inspector toggles", () => {
  it("a leaf's box writes the same pending entry, and stays in sync with the panel's", () => {
    const m = mount(whatIfGraph());
    m.model.pySet("selected", LEAF);
    const selector = '[data-toggle="requires-grad"][data-leaf="input1"]';
    const inInspector = box(q(inspector(m.el), '[data-section="leaf"]'), '[data-scope-toggle="requires-grad"]');
    const inPanel = box(panel(m.el), selector);
    // DESIGN §6's selector finds the panel's box only: the inspector's is a copy, kept out of it.
    expect([...m.el.querySelectorAll(selector)]).toEqual([inPanel]);
    inInspector.click();
    expect(lastPending(m.model)).toEqual(toggles({ requires_grad: { input1: false } }));
    expect(inPanel.checked).toBe(false);
    inPanel.click();
    expect(lastPending(m.model)).toEqual(toggles());
    expect(inInspector.checked).toBe(true);
  });

  it("an op node in a module offers freeze / no_grad / detach of it", () => {
    const m = mount(whatIfGraph());
    m.model.pySet("selected", MUL);
    const section = q(inspector(m.el), '[data-section="what-if"]');
    box(section, '[data-scope-toggle="freeze"][data-module="layer1"]').click();
    expect(lastPending(m.model)).toEqual(toggles({ requires_grad: { layer1: false } }));
    expect(box(panel(m.el), '[data-scope-toggle="freeze"][data-module="layer1"]').checked).toBe(true);
    box(section, '[data-scope-toggle="no-grad"][data-module="layer1"]').click();
    box(section, '[data-scope-toggle="detach"][data-module="layer1"]').click();
    expect(lastPending(m.model)).toEqual(
      toggles({ requires_grad: { layer1: false }, no_grad: ["layer1"], detach: ["layer1"] }),
    );
    // A node of a cell variable can be detached from here too.
    m.model.pySet("selected", SIN);
    expect(q(inspector(m.el), '[data-section="what-if"]').querySelector('[data-variable="out1"]')).not.toBeNull();
  });

  it("detaches at a chosen node when the debugger can (runnable and live debuggers)", () => {
    const g = whatIfGraph();
    expect(g.controls.detach_nodes).toBe(false);
    let m = mount(g);
    m.model.pySet("selected", MUL);
    expect(q(inspector(m.el), '[data-section="what-if"]').querySelector("[data-edge]")).toBeNull();
    unmountAll();
    g.controls = { ...g.controls, detach_nodes: true };
    m = mount(g);
    m.model.pySet("selected", MUL);
    box(q(inspector(m.el), '[data-section="what-if"]'), `[data-scope-toggle="detach"][data-edge="${MUL}"]`).click();
    expect(lastPending(m.model)).toEqual(toggles({ detach: [MUL] }));
  });

  it("shows no toggles when the debugger cannot re-run", () => {
    const g = whatIfGraph();
    g.controls = controls();
    const m = mount(g);
    m.model.pySet("selected", LEAF);
    expect(inspector(m.el).querySelector("[data-toggle], [data-scope-toggle]")).toBeNull();
    m.model.pySet("selected", MUL);
    expect(inspector(m.el).querySelector('[data-section="what-if"]')).toBeNull();
  });
});

describe("re-run", () => {
  it("sends {type: rerun, after_run} with the index of the run shown", () => {
    const m = mount(whatIfGraph(4));
    rerunButton(m.el).click();
    expect(m.model.lastSent("rerun")).toMatchObject({ type: "rerun", after_run: 4 });
    expect(typeof m.model.lastSent("rerun").request_id).toBe("string");
    expect(rerunButton(m.el).getAttribute("aria-disabled")).toBe("true");
    m.model.pyReply("rerun", { run: 5 });
    expect(rerunButton(m.el).getAttribute("aria-disabled")).toBe("false");
    expect(q(m.el, '[data-gradsight="refused"]').hidden).toBe(true);
  });

  it("refuses a second click while the first is in flight, and sends nothing", () => {
    const m = mount(whatIfGraph());
    rerunButton(m.el).click();
    rerunButton(m.el).click();
    expect(m.model.sent().filter((s) => s.type === "rerun")).toHaveLength(1);
    const refused = q(m.el, '[data-gradsight="refused"]');
    expect(refused.hidden).toBe(false);
    expect(refused.textContent).toBe(RUNNING_TEXT);
  });

  it("refuses while status is running, until it is not", () => {
    const m = mount(whatIfGraph());
    m.model.pySet("status", "running");
    expect(rerunButton(m.el).getAttribute("aria-disabled")).toBe("true");
    rerunButton(m.el).click();
    expect(m.model.sent().filter((s) => s.type === "rerun")).toHaveLength(0);
    expect(q(m.el, '[data-gradsight="refused"]').textContent).toBe("a re-run is already running");
    m.model.pySet("status", "ready");
    expect(q(m.el, '[data-gradsight="refused"]').hidden).toBe(true);
    rerunButton(m.el).click();
    expect(m.model.sent().filter((s) => s.type === "rerun")).toHaveLength(1);
  });

  it("shows Python's refusal, and points at the traceback when the user's code raised", () => {
    const m = mount(whatIfGraph());
    rerunButton(m.el).click();
    m.model.pyReply("rerun", { ok: false, error: "a re-run already ran since run 1: look at run 2 first" });
    const refused = q(m.el, '[data-gradsight="refused"]');
    expect(refused.textContent).toBe("a re-run already ran since run 1: look at run 2 first");
    expect(refused.getAttribute("data-refused")).toBe("python");
    rerunButton(m.el).click();
    m.model.pySet("error", "Traceback (most recent call last):\n  ...\nRuntimeError: boom");
    m.model.pySet("status", "error");
    m.model.pyReply("rerun", { ok: false, error: "RuntimeError: boom" });
    expect(refused.textContent).toBe(FAILED_TEXT);
  });

  it("clears a failed re-run's line when another run is shown", () => {
    const m = mount(whatIfGraph());
    rerunButton(m.el).click();
    m.model.pySet("status", "error");
    m.model.pyReply("rerun", { ok: false, error: "RuntimeError: boom" });
    const refused = q(m.el, '[data-gradsight="refused"]');
    expect(refused.hidden).toBe(false);
    m.model.pySet("status", "running");
    m.model.pySet("graph", whatIfGraph(2)); // dbg.rerun() from a cell succeeded
    m.model.pySet("status", "ready");
    expect(refused.hidden).toBe(true);
  });

  it("shows the traceback of a failed re-run in the error banner and keeps the graph", () => {
    const m = mount(whatIfGraph());
    m.model.pySet("selected", SIN);
    const traceback = 'Traceback (most recent call last):\n  File "cell", line 3\nRuntimeError: boom <b>';
    m.model.pySet("error", traceback);
    m.model.pySet("status", "error");
    const pre = q(q(m.el, '[data-gradsight="error"]'), "pre");
    expect(pre.textContent).toBe(traceback);
    expect(q(m.el, '[data-gradsight="status"]').textContent).toBe("error");
    expect(m.el.querySelectorAll(".gs-node")).toHaveLength(4);
    expect(nodeEl(m.el, SIN).classList.contains("gs-selected")).toBe(true);
    expect(m.el.querySelector("b")).toBeNull();
  });

  it("has no button and shows the note when the debugger cannot re-run", () => {
    const g = whatIfGraph();
    g.controls = controls({ note: "a tensor debugger cannot re-run: pass the model, inputs and loss" });
    const { el, model } = mount(g);
    expect(panel(el).hidden).toBe(false);
    expect(q(el, "[data-toggles-note]").textContent).toContain("cannot re-run");
    expect(el.querySelector('[data-action="rerun"]')).toBeNull();
    expect(el.querySelector("[data-toggle], [data-scope-toggle]")).toBeNull();
    // Without a note there is nothing to show; a re-runnable graph brings the button back.
    g.controls = controls();
    model.pySet("graph", g);
    expect(panel(el).hidden).toBe(true);
    model.pySet("graph", whatIfGraph());
    expect(rerunButton(el).isConnected).toBe(true);
  });
});

describe("run banner", () => {
  it("says which toggles the run shown applied", () => {
    const g = whatIfGraph();
    g.run.toggles = toggles({ requires_grad: { layer1: false }, no_grad: ["encoder"] });
    const { el, model } = mount(g);
    const part = q(el, '[data-gradsight="run"] [data-run="toggles"]');
    expect(part.textContent).toBe("what if: layer1.requires_grad=False; no_grad(encoder)");
    g.run.toggles = toggles();
    model.pySet("graph", g);
    expect(part.hidden).toBe(true);
  });
});

describe("elapsed time", () => {
  it("counts every 100 ms while running, next to the status, and stops", () => {
    vi.useFakeTimers();
    const { el, model } = mount(whatIfGraph());
    const elapsed = q(el, '[data-gradsight="elapsed"]');
    expect(elapsed.hidden).toBe(true);
    model.pySet("status", "running");
    expect(q(el, '[data-gradsight="status"]').textContent).toBe("running");
    expect(elapsed.hidden).toBe(false);
    expect(elapsed.textContent).toBe("0.0 s");
    vi.advanceTimersByTime(12 * ELAPSED_TICK_MS);
    expect(elapsed.textContent).toBe("1.2 s");
    expect(vi.getTimerCount()).toBe(1);
    model.pySet("status", "ready");
    expect(elapsed.hidden).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("cleanup clears the timer, the rerun request and every listener", () => {
    vi.useFakeTimers();
    const { model, cleanup } = mount(whatIfGraph());
    model.pySet("status", "running");
    model.pySet("status", "ready");
    q(document, '[data-action="rerun"]').click();
    model.pySet("status", "running");
    expect(vi.getTimerCount()).toBe(2);
    cleanup();
    expect(vi.getTimerCount()).toBe(0);
    expect(model.handlerCount()).toBe(0);
  });
});
