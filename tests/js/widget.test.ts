// @vitest-environment jsdom
// The widget's DOM contract (DESIGN §6) and its two-way sync, driven through a fake anywidget model.

import widget from "../../js/widget";
import { SCHEMA_VERSION, type WireGraph } from "../../js/wire";
import { type FakeModel, fakeModel } from "./fake-model";
import { ADD, emptyGraph, LEAF, MUL, node, SIN, sampleGraph } from "./fixtures";
import { keysNotebookTakes } from "./mount";

interface Mounted {
  model: FakeModel;
  el: HTMLElement;
  cleanup: () => void;
}

const mounted: Mounted[] = [];

function mount(graph: unknown = sampleGraph(), extra: Partial<Parameters<typeof fakeModel>[0]> = {}): Mounted {
  const model = fakeModel({ graph, ...extra });
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = widget.render({ model, el });
  const m = { model, el, cleanup };
  mounted.push(m);
  return m;
}

afterEach(() => {
  for (const m of mounted.splice(0)) {
    m.cleanup();
    m.el.remove();
  }
});

function q<E extends Element = HTMLElement>(el: ParentNode, selector: string): E {
  const found = el.querySelector<E>(selector);
  if (!found) throw new Error(`nothing matches ${selector}`);
  return found;
}

const nodeEl = (el: HTMLElement, id: string): SVGGElement => q<SVGGElement>(el, `.gs-node[data-node-id="${id}"]`);
const inspector = (el: HTMLElement): HTMLElement => q(el, '[data-gradsight="inspector"]');

describe("render", () => {
  it("builds the root, the status and one element per node", () => {
    const { el } = mount();
    expect(el.querySelectorAll(".gradsight")).toHaveLength(1);
    expect(q(el, '[data-gradsight="status"]').textContent).toBe("ready");
    expect(q(el, '[data-gradsight="count"]').textContent).toBe("4 nodes");
    const nodes = [...el.querySelectorAll(".gs-node")];
    expect(nodes.map((n) => n.getAttribute("data-node-name"))).toEqual([
      "AddBackward0",
      "MulBackward0",
      "SinBackward0",
      "AccumulateGrad",
    ]);
    for (const n of nodes) {
      expect(["0", "-1"]).toContain(n.getAttribute("tabindex"));
      expect(n.getAttribute("role")).toBe("button");
      expect(n.getAttribute("aria-label")).toBeTruthy();
    }
    expect(nodeEl(el, LEAF).classList.contains("gs-kind-leaf")).toBe(true);
    expect(nodeEl(el, LEAF).getAttribute("data-kind")).toBe("leaf");
    expect(nodeEl(el, ADD).classList.contains("gs-root")).toBe(true);
  });

  it("labels nodes with the op (or leaf) name, module and shape", () => {
    const graph = sampleGraph();
    const mul = graph.nodes[1];
    if (mul) mul.module = "encoder.layers.11.self_attention.output_projection";
    const { el } = mount(graph);
    const labels = (id: string): string[] =>
      [...nodeEl(el, id).querySelectorAll("text")].map((t) => t.textContent ?? "");
    expect(labels(SIN)).toEqual(["SinBackward0", "out1 (25,)"]);
    expect(labels(LEAF)).toEqual(["input1", "(25,)"]);
    const [name, module] = labels(MUL);
    expect(name).toBe("MulBackward0");
    expect(module?.startsWith("…")).toBe(true);
    expect(module?.endsWith("output_projection")).toBe(true);
  });

  it("draws an edge per non-null next entry, none for inputs that need no gradient", () => {
    const { el } = mount();
    const edges = [...el.querySelectorAll("path.gs-edge")].map((p) => [
      p.getAttribute("data-from"),
      p.getAttribute("data-to"),
    ]);
    expect(edges).toEqual([
      [ADD, MUL],
      [MUL, SIN],
      [SIN, LEAF],
    ]);
  });

  it("shows the status and the error trait as Python changes them", () => {
    const { el, model } = mount();
    model.pySet("status", "running");
    expect(q(el, '[data-gradsight="status"]').textContent).toBe("running");
    model.pySet("error", "RuntimeError: boom\n  in cell 3");
    model.pySet("status", "error");
    const banner = q(el, '[data-gradsight="error"]');
    expect(banner.hidden).toBe(false);
    expect(banner.textContent).toContain("RuntimeError: boom");
    expect(q(el, '[data-gradsight="status"]').textContent).toBe("error");
    model.pySet("error", "");
    expect(banner.hidden).toBe(true);
  });

  it("shows the message of an empty graph and the notes", () => {
    const empty: WireGraph = emptyGraph({
      message: "x does not require grad, so it has no backward graph",
      notes: ["saved tensors were freed by backward"],
    });
    const { el } = mount(empty);
    const message = q(el, '[data-gradsight="message"]');
    expect(message.hidden).toBe(false);
    expect(message.textContent).toBe("x does not require grad, so it has no backward graph");
    expect(q(el, '[data-gradsight="notes"]').textContent).toContain("saved tensors were freed");
    expect(el.querySelectorAll(".gs-node")).toHaveLength(0);
    expect(q(el, '[data-gradsight="count"]').textContent).toBe("0 nodes");
  });
});

describe("selection", () => {
  it("a click selects: selected is set and saved, the node and its edges are highlighted", () => {
    const { el, model } = mount();
    nodeEl(el, SIN).dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(model.set).toHaveBeenCalledWith("selected", SIN);
    expect(model.save_changes).toHaveBeenCalledTimes(1);
    expect(nodeEl(el, SIN).classList.contains("gs-selected")).toBe(true);
    const emphasized = [...el.querySelectorAll("path.gs-edge-selected")].map((p) => p.getAttribute("data-to"));
    expect(emphasized.sort()).toEqual([LEAF, SIN].sort());
    expect(inspector(el).getAttribute("data-node")).toBe(SIN);
  });

  it("Enter and Space on a focused node select it", () => {
    const { el, model } = mount();
    nodeEl(el, MUL).dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
    expect(model.set).toHaveBeenLastCalledWith("selected", MUL);
    nodeEl(el, LEAF).dispatchEvent(new KeyboardEvent("keydown", { key: " ", bubbles: true }));
    expect(model.set).toHaveBeenLastCalledWith("selected", LEAF);
  });

  it("the layout select keeps its own arrow keys (not prevented), and Notebook 7 takes none of them", () => {
    vi.useFakeTimers();
    const { el } = mount();
    const select = el.querySelector('select[data-action="direction"]') as HTMLSelectElement;
    const prevented: boolean[] = [];
    const seen = (e: Event) => prevented.push(e.defaultPrevented);
    document.addEventListener("keydown", seen, true); // where Notebook 7 looks, before the select
    expect(keysNotebookTakes(select, ["ArrowDown", "ArrowUp", "Shift+Enter", "Control+s"])).toEqual([
      "Shift+Enter",
      "Control+s",
    ]);
    expect(prevented).toEqual([false, false, false, false]); // the browser still moves the selection
    document.removeEventListener("keydown", seen, true);
    vi.runAllTimers();
    expect(select.hasAttribute("data-lm-suppress-shortcuts")).toBe(false); // for that key only
    vi.useRealTimers();
  });

  it("arrow keys move focus along the edges", () => {
    const { el } = mount();
    // Notebook 7 binds in the capture phase: it must leave a focused node's own keys alone, and
    // take every other one (Shift+Enter runs the cell, Ctrl+S saves)
    for (const n of el.querySelectorAll(".gs-node")) {
      const keys = [
        "ArrowUp",
        "ArrowDown",
        "ArrowLeft",
        "ArrowRight",
        "Enter",
        " ",
        "Shift+Enter",
        "Control+s",
        "Escape",
      ];
      expect(keysNotebookTakes(n, keys)).toEqual(["Shift+Enter", "Control+s", "Escape"]);
    }
    nodeEl(el, ADD).focus();
    nodeEl(el, ADD).dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    expect(document.activeElement?.getAttribute("data-node-id")).toBe(MUL);
    nodeEl(el, MUL).dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", bubbles: true }));
    expect(document.activeElement?.getAttribute("data-node-id")).toBe(ADD);
  });

  it("Python selecting a node shows its saved values in the inspector", () => {
    const { el, model } = mount();
    expect(inspector(el).textContent).toContain("Click a node");
    model.pySet("selected", SIN);
    expect(nodeEl(el, SIN).classList.contains("gs-selected")).toBe(true);
    const saved = q(inspector(el), '[data-section="saved"] [data-saved-name="_saved_self"]');
    expect(saved.textContent).toContain("(25,)");
    expect(saved.textContent).toContain("float32");
    expect(saved.textContent).toContain("freed by backward — summary taken before");
    expect(q(saved, '[data-stat="std"]').textContent).toBe("—");
    expect(q(saved, '[data-stat="NaN"]').textContent).toBe("0");
    expect(q(inspector(el), '[data-field="source"]').textContent).toContain("torch.sin(input1)");
    expect(inspector(el).querySelector('[data-section="leaf"]')).toBeNull();
    // Gradients come from runnable debuggers; this graph has none.
    expect(q(inspector(el), '[data-section="grad-in"]').textContent).toContain("no gradient recorded");
    expect(q(inspector(el), '[data-section="grad-out"]').textContent).toContain("no gradient recorded");
    model.pySet("selected", "");
    expect(el.querySelector(".gs-selected")).toBeNull();
    expect(inspector(el).textContent).toContain("Click a node");
  });

  it("shows scalars, None edges and the leaf section", () => {
    const { el, model } = mount();
    model.pySet("selected", MUL);
    expect(q(inspector(el), '[data-saved-name="_saved_other"]').textContent).toContain("2");
    expect(q(inspector(el), '[data-saved-name="_saved_self"]').textContent).toContain("None");
    const edges = q(inspector(el), '[data-section="edges"]');
    expect(edges.textContent).toContain("None (input needs no gradient)");
    // DESIGN §6: [data-node-id] finds the node itself, once, even while the inspector links to it
    expect(el.querySelectorAll(`[data-node-id="${SIN}"]`)).toHaveLength(1);
    q(edges, `button[data-goto-node="${SIN}"]`).click();
    expect(model.set).toHaveBeenLastCalledWith("selected", SIN);
    expect(inspector(el).getAttribute("data-node")).toBe(SIN);

    model.pySet("selected", LEAF);
    const leaf = q(inspector(el), '[data-section="leaf"]');
    expect(q(leaf, '[data-field="name"]').textContent).toBe("input1");
    expect(q(leaf, '[data-field="requires_grad"]').textContent).toBe("True");
    expect(q(leaf, '[data-field="is_parameter"]').textContent).toBe("False");
    expect(leaf.textContent).toContain("(25,)");
    expect(leaf.querySelector(".gs-tensor")).not.toBeNull();
  });

  it("lists recorded gradients, with None entries", () => {
    const graph = sampleGraph();
    const sin = graph.nodes[2];
    if (sin) {
      sin.grad_in = [{ ...sampleTensor(), nan_count: 3, min: null }];
      sin.grad_out = [null];
    }
    const { el, model } = mount(graph);
    model.pySet("selected", SIN);
    const gradIn = q(inspector(el), '[data-section="grad-in"]');
    expect(q(gradIn, '[data-stat="NaN"]').textContent).toBe("3");
    expect(q(gradIn, '[data-stat="NaN"]').classList.contains("gs-bad")).toBe(true);
    expect(q(inspector(el), '[data-section="grad-out"]').textContent).toContain("None");
    expect(nodeEl(el, SIN).getAttribute("data-nonfinite")).toBe("true");
  });

  it("keeps the selection across a new graph when the id still exists", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    model.pySet("graph", sampleGraph());
    expect(nodeEl(el, SIN).classList.contains("gs-selected")).toBe(true);
    expect(inspector(el).getAttribute("data-node")).toBe(SIN);
    const smaller = sampleGraph();
    smaller.nodes = smaller.nodes.slice(0, 2);
    const mul = smaller.nodes[1];
    if (mul) mul.next = [[null, 0]];
    model.pySet("graph", smaller);
    expect(el.querySelectorAll(".gs-node")).toHaveLength(2);
    expect(el.querySelector(".gs-selected")).toBeNull();
    expect(inspector(el).textContent).toContain("not in the current graph");
  });
});

function sampleTensor() {
  const sin = sampleGraph().nodes[3]?.leaf?.grad;
  if (!sin) throw new Error("fixture lost its leaf grad");
  return sin;
}

describe("robustness", () => {
  it("shows an invalid graph as an error instead of throwing", () => {
    const { el, model } = mount({ schema_version: SCHEMA_VERSION, roots: ["nope"], nodes: "not a list" });
    const banner = q(el, '[data-gradsight="error"]');
    expect(banner.hidden).toBe(false);
    expect(banner.textContent).toContain("graph.nodes should be an array");
    expect(el.querySelectorAll(".gs-node")).toHaveLength(0);
    model.pySet("graph", { schema_version: 99, roots: [], nodes: [], notes: [], message: null });
    expect(banner.textContent).toContain("schema_version is 99");
    model.pySet("graph", sampleGraph());
    expect(banner.hidden).toBe(true);
    expect(el.querySelectorAll(".gs-node")).toHaveLength(4);
  });

  it("treats an unset graph as 'no graph yet', not as an error", () => {
    const { el } = mount({});
    expect(q(el, '[data-gradsight="error"]').hidden).toBe(true);
    expect(q(el, ".gs-empty").textContent).toBe("No graph yet.");
  });

  it("inserts names, modules, notes and errors as text, never as HTML", () => {
    const evil = "<img src=x onerror=alert(1)>";
    const graph = sampleGraph();
    graph.message = evil;
    graph.notes = [evil];
    for (const n of graph.nodes) {
      n.module = evil;
      n.variable = evil;
      n.source = evil;
    }
    const leaf = graph.nodes[3]?.leaf;
    if (leaf) leaf.name = evil;
    graph.nodes[2]?.saved.push({ name: evil, value: { type: "str", value: evil } });
    graph.nodes[2]?.saved.push({ name: "_saved_x", value: { type: "unavailable", reason: evil } });
    const { el, model } = mount(graph, { error: evil });
    model.pySet("selected", SIN);
    expect(el.querySelector("img")).toBeNull();
    expect(el.querySelector('[data-gradsight="message"]')?.textContent).toBe(evil);
    expect(inspector(el).querySelector(`[data-field="module"]`)?.textContent).toBe(evil);
    expect(inspector(el).textContent).toContain(evil);
    model.pySet("selected", LEAF);
    expect(el.querySelector("img")).toBeNull();
    expect(q(inspector(el), '[data-section="leaf"] [data-field="name"]').textContent).toBe(evil);
  });

  it("cleanup removes every listener and the DOM it added", () => {
    const model = fakeModel({ graph: sampleGraph() });
    const el = document.createElement("div");
    const cleanup = widget.render({ model, el });
    expect(model.handlerCount()).toBeGreaterThan(0);
    cleanup();
    expect(model.handlerCount()).toBe(0);
    expect(el.querySelector(".gradsight")).toBeNull();
  });

  it("two views of one model work side by side", () => {
    const model = fakeModel({ graph: sampleGraph() });
    const a = document.createElement("div");
    const b = document.createElement("div");
    const cleanA = widget.render({ model, el: a });
    const cleanB = widget.render({ model, el: b });
    nodeEl(a, SIN).dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(nodeEl(b, SIN).classList.contains("gs-selected")).toBe(true);
    const markers = [...a.querySelectorAll("marker"), ...b.querySelectorAll("marker")].map((m) => m.id);
    expect(new Set(markers).size).toBe(markers.length);
    cleanA();
    cleanB();
    expect(model.handlerCount()).toBe(0);
  });
});

describe("controls", () => {
  const positions = (el: HTMLElement): string[] =>
    [...el.querySelectorAll(".gs-node")].map((n) => n.getAttribute("transform") ?? "");

  it("the direction control writes options and lays the graph out again", () => {
    const { el, model } = mount(sampleGraph(), { options: { direction: "TB", other: 1 } });
    const before = positions(el);
    const select = q<HTMLSelectElement>(el, '[data-action="direction"]');
    expect(select.value).toBe("TB");
    select.value = "LR";
    select.dispatchEvent(new Event("change", { bubbles: true }));
    expect(model.set).toHaveBeenCalledWith("options", { direction: "LR", other: 1 });
    expect(model.save_changes).toHaveBeenCalled();
    expect(positions(el)).not.toEqual(before);
  });

  it("follows a direction set from Python", () => {
    const { el, model } = mount();
    const before = positions(el);
    model.pySet("options", { direction: "BT" });
    expect(q<HTMLSelectElement>(el, '[data-action="direction"]').value).toBe("BT");
    expect(positions(el)).not.toEqual(before);
    model.pySet("options", { direction: "sideways" });
    expect(q<HTMLSelectElement>(el, '[data-action="direction"]').value).toBe("TB");
  });

  it("zoom buttons and fit change the viewport transform", () => {
    const { el } = mount();
    const viewport = q(el, ".gs-viewport");
    const scale = (): number => Number(/scale\(([^)]+)\)/.exec(viewport.getAttribute("transform") ?? "")?.[1]);
    const fitted = scale();
    q(el, '[data-action="zoom-in"]').click();
    expect(scale()).toBeCloseTo(fitted * 1.25);
    q(el, '[data-action="zoom-out"]').click();
    q(el, '[data-action="zoom-out"]').click();
    expect(scale()).toBeCloseTo(fitted / 1.25);
    q(el, '[data-action="fit"]').click();
    expect(scale()).toBeCloseTo(fitted);
  });

  it("every control and node is reachable by Tab", () => {
    const { el } = mount();
    for (const action of ["fit", "zoom-in", "zoom-out", "direction"]) {
      const control = q(el, `[data-action="${action}"]`);
      expect(["BUTTON", "SELECT"]).toContain(control.tagName);
    }
    // The graph is one Tab stop (the root at first); the arrow keys reach every node from it.
    const stops = (): string[] =>
      [...el.querySelectorAll('.gs-node[tabindex="0"]')].map((n) => n.getAttribute("data-node-id") ?? "");
    expect(stops()).toEqual([ADD]);
    const seen = new Set<string>();
    for (const key of ["ArrowRight", "ArrowLeft"]) {
      let at: Element | null = q(el, '.gs-node[tabindex="0"]');
      for (let i = 0; at && i < 10; i++) {
        seen.add(at.getAttribute("data-node-id") ?? "");
        (at as SVGGElement).focus();
        at.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true }));
        const now = document.activeElement;
        at = now !== at && now?.hasAttribute("data-node-id") ? now : null;
      }
    }
    expect([...seen].sort()).toEqual([ADD, MUL, SIN, LEAF].sort());
  });

  it("the Tab stop follows the keyboard and the selection, and survives a redraw", () => {
    const { el, model } = mount();
    const stops = (): string[] =>
      [...el.querySelectorAll('.gs-node[tabindex="0"]')].map((n) => n.getAttribute("data-node-id") ?? "");
    nodeEl(el, ADD).focus();
    nodeEl(el, ADD).dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
    expect(stops()).toEqual([MUL]);
    nodeEl(el, LEAF).focus(); // as a click on it does in a browser
    nodeEl(el, LEAF).dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(stops()).toEqual([LEAF]);
    // A new graph with the same ids (a live step, a re-run) keeps the Tab stop where it was.
    model.pySet("graph", sampleGraph());
    expect(stops()).toEqual([LEAF]);
    // A graph without that node puts it back on the first root.
    const other = sampleGraph();
    other.nodes = other.nodes.filter((n) => n.id !== LEAF);
    for (const n of other.nodes) n.next = n.next.filter(([to]) => to !== LEAF);
    model.pySet("graph", other);
    expect(stops()).toEqual([ADD]);
    // A selection from Python while the keyboard is on another node: the Tab stop stays with focus.
    nodeEl(el, MUL).focus();
    nodeEl(el, MUL).dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowLeft", bubbles: true }));
    const focused = document.activeElement?.getAttribute("data-node-id");
    model.pySet("selected", SIN);
    expect(stops()).toEqual([focused]);
  });

  it("renders a 2,000-node graph", () => {
    const nodes = Array.from({ length: 2000 }, (_, i) =>
      node(`MulBackward0#${i}`, {
        kind: i === 0 ? "root" : "op",
        next: i + 1 < 2000 ? [[`MulBackward0#${i + 1}`, 0]] : [],
      }),
    );
    const { el } = mount(emptyGraph({ roots: ["MulBackward0#0"], nodes }));
    expect(el.querySelectorAll(".gs-node")).toHaveLength(2000);
    expect(el.querySelectorAll(".gs-edge")).toHaveLength(1999);
  });
});
