// @vitest-environment jsdom
// The big-graph view mounted in jsdom (no 2D context, no Worker: layout runs on the main thread):
// grouped on a canvas, the outline and search carrying the DOM contract (DESIGN §6), selection
// from the canvas, the outline, the search list and Python, keyboard, toggles, the painted hook,
// and a cleanup that leaves nothing behind.

import { recordFrame } from "../../js/frames";
import { indexNodes, pathToRoots } from "../../js/graph-index";
import { buildGroups, type Group } from "../../js/groups";
import { cssString, OUTLINE_PAGE } from "../../js/outline";
import { DEFAULT_PALETTE } from "../../js/palette";
import { computeVisible, itemsOnPath } from "../../js/visible";
import widget from "../../js/widget";
import { skeletonGraph, transformerGraph } from "./big-graphs";
import { fakeModel } from "./fake-model";
import { emptyGraph, node, sampleGraph } from "./fixtures";
import { click, inspector, keysNotebookTakes, mount, q, useMountedViews } from "./mount";

/** Over 2,000 JSON nodes: 12 layers whose MLPs have 160 extra ops each. */
const big = () => transformerGraph(12, 160);
const GELU = "encoder.layers.7.mlp/GeluBackward0#0";

const outline = (el: HTMLElement): HTMLElement => q(el, '[data-gradsight="outline"]');
const groupEntry = (el: HTMLElement, path: string): HTMLElement => q(outline(el), `[data-group="${path}"]`);
const nodeEntry = (el: HTMLElement, id: string): HTMLElement | null =>
  outline(el).querySelector(`[data-node-id="${id}"]`);

function type(input: HTMLInputElement, text: string): void {
  input.value = text;
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Click the canvas at a point of its (fallback 800 × 520) box; jsdom puts the box at 0, 0. */
function clickCanvas(el: HTMLElement, x: number, y: number): void {
  q(el, '[data-gradsight="canvas"]').dispatchEvent(new MouseEvent("click", { bubbles: true, clientX: x, clientY: y }));
}

function key(target: Element, k: string): void {
  target.dispatchEvent(new KeyboardEvent("keydown", { key: k, bubbles: true }));
}

const nextFrame = (): Promise<void> => new Promise((resolve) => requestAnimationFrame(() => resolve()));

useMountedViews();

describe("big graphs open grouped on a canvas", () => {
  it("shows module groups in the outline and draws on a canvas, not SVG", () => {
    const { el } = mount(big());
    expect(q(el, ".gradsight").classList.contains("gs-big-mode")).toBe(true);
    expect(el.querySelectorAll(".gs-node")).toHaveLength(0);
    expect(q(el, '[data-gradsight="canvas"]').tagName).toBe("CANVAS");
    expect(q(el, '[data-gradsight="minimap"]').tagName).toBe("CANVAS");
    for (const path of ["embed", "encoder", "head"])
      expect(groupEntry(el, path).getAttribute("aria-expanded")).toBe("false");
    expect(nodeEntry(el, "SumBackward0#0")?.getAttribute("data-node-name")).toBe("SumBackward0");
    expect(nodeEntry(el, GELU)).toBeNull();
    expect(q(el, '[data-gradsight="count"]').textContent).toMatch(/2,\d{3} nodes/);
    expect(groupEntry(el, "encoder").textContent).toContain("2,");
  });

  it("always groups a binary skeleton, however small", () => {
    const { el } = mount(skeletonGraph(transformerGraph(2).nodes));
    expect(groupEntry(el, "encoder").getAttribute("aria-expanded")).toBe("false");
  });

  it("keeps small graphs on the SVG view, without outline or canvas", () => {
    const { el } = mount(sampleGraph());
    expect(el.querySelectorAll(".gs-node")).toHaveLength(4);
    expect(el.querySelector('[data-gradsight="outline"]')).toBeNull();
    expect(el.querySelector('[data-gradsight="canvas"]')).toBeNull();
  });

  it("badges the repeated blocks in the outline", () => {
    const { el } = mount(big());
    click(groupEntry(el, "encoder"));
    const layers = groupEntry(el, "encoder.layers");
    expect(layers.getAttribute("data-repeat")).toBe("12");
    expect(layers.textContent).toContain("×12 identical blocks");
  });

  it("goes back to SVG when a small graph replaces a big one", () => {
    const { el, model } = mount(big());
    model.pySet("graph", sampleGraph());
    expect(q(el, ".gradsight").classList.contains("gs-big-mode")).toBe(false);
    expect(el.querySelectorAll(".gs-node")).toHaveLength(4);
    expect(q<HTMLElement>(el, '[data-gradsight="big"]').hidden).toBe(true);
  });
});

describe("the outline (DOM contract on canvas)", () => {
  it("expands and collapses groups, listing the nodes of expanded ones", () => {
    const { el } = mount(big());
    click(groupEntry(el, "head"));
    expect(groupEntry(el, "head").getAttribute("aria-expanded")).toBe("true");
    const entry = nodeEntry(el, "head/AddmmBackward0#0");
    expect(entry?.getAttribute("data-node-name")).toBe("AddmmBackward0");
    expect(nodeEntry(el, "leaf:head.weight")?.getAttribute("data-node-name")).toBe("AccumulateGrad");
    click(groupEntry(el, "head"));
    expect(groupEntry(el, "head").getAttribute("aria-expanded")).toBe("false");
    expect(nodeEntry(el, "head/AddmmBackward0#0")).toBeNull();
  });

  it("selects a node like a canvas click", () => {
    const { el, model } = mount(big());
    click(groupEntry(el, "head"));
    click(nodeEntry(el, "head/TBackward0#0") as HTMLElement);
    expect(model.get("selected")).toBe("head/TBackward0#0");
    expect(inspector(el).getAttribute("data-node")).toBe("head/TBackward0#0");
    expect(nodeEntry(el, "head/TBackward0#0")?.getAttribute("aria-current")).toBe("true");
    // The node is centred: a click in the middle of the canvas lands on it.
    model.set("selected", "");
    clickCanvas(el, 400, 260);
    expect(model.get("selected")).toBe("head/TBackward0#0");
  });

  it("reaches every node by expanding its groups", () => {
    const graph = big();
    const { el } = mount(graph);
    const ix = indexNodes(graph.nodes, graph.roots);
    const tree = buildGroups(ix);
    for (const id of [GELU, "leaf:encoder.layers.11.attn.qkv.weight", "embed/EmbeddingBackward0#0"]) {
      const i = ix.indexOf.get(id) as number;
      const chain: string[] = [];
      for (let g = tree.groupOf[i] as number; g > 0; g = (tree.groups[g] as Group).parent)
        chain.unshift((tree.groups[g] as Group).path);
      for (const path of chain)
        if (groupEntry(el, path).getAttribute("aria-expanded") === "false") click(groupEntry(el, path));
      expect(nodeEntry(el, id), id).not.toBeNull();
    }
  });

  it("moves between entries with the arrow keys and opens groups with Right", () => {
    const { el } = mount(big());
    const first = groupEntry(el, "embed");
    first.focus();
    key(first, "ArrowDown");
    expect(document.activeElement?.getAttribute("data-group")).toBe("encoder");
    key(document.activeElement as Element, "ArrowRight");
    expect(groupEntry(el, "encoder").getAttribute("aria-expanded")).toBe("true");
    expect(document.activeElement?.getAttribute("data-group")).toBe("encoder");
  });

  it("is one Tab stop that follows the arrow keys, clicks and the selection", () => {
    const { el, model } = mount(big());
    const stops = (): string[] =>
      [...outline(el).querySelectorAll('button[tabindex="0"]')].map(
        (b) => b.getAttribute("data-group") ?? b.getAttribute("data-node-id") ?? "",
      );
    const buttons = outline(el).querySelectorAll("button");
    expect(buttons.length).toBeGreaterThan(1);
    expect(stops()).toEqual(["embed"]); // the first entry
    groupEntry(el, "embed").focus();
    key(groupEntry(el, "embed"), "ArrowDown");
    expect(stops()).toEqual(["encoder"]);
    // Opening a group rebuilds the list: the Tab stop stays on the focused entry.
    key(document.activeElement as Element, "ArrowRight");
    expect(stops()).toEqual(["encoder"]);
    groupEntry(el, "head").focus(); // as a click does in chromium
    click(groupEntry(el, "head"));
    expect(stops()).toEqual(["head"]);
    (document.activeElement as HTMLElement | null)?.blur(); // a click without focus (Safari) moves it too
    click(nodeEntry(el, "head/TBackward0#0") as HTMLElement);
    expect(stops()).toEqual(["head/TBackward0#0"]);
    (document.activeElement as HTMLElement | null)?.blur();
    model.pySet("selected", "leaf:head.weight");
    expect(stops()).toEqual(["leaf:head.weight"]);
  });
});

describe("Jupyter's shortcuts", () => {
  // Notebook 7 runs its key bindings in the capture phase: its command-mode ArrowUp/Down/Left/Right
  // bindings took the key from a focused canvas or entry before the view's handler saw it.
  it("leave the view the keys of every element that handles them itself, and only those", () => {
    const { el } = mount(big());
    type(q<HTMLInputElement>(el, '[data-gradsight="search"]'), "GeluBackward0");
    const owners = [
      q(el, '[data-gradsight="canvas"]'),
      ...outline(el).querySelectorAll("button"),
      ...q(el, '[data-gradsight="search-results"]').querySelectorAll("button"),
    ];
    expect(owners.length).toBeGreaterThan(12);
    for (const owner of owners) {
      const taken = keysNotebookTakes(owner, [
        "ArrowUp",
        "ArrowDown",
        "ArrowLeft",
        "ArrowRight",
        "Shift+Enter",
        "Control+s",
      ]);
      expect(taken, owner.outerHTML).toEqual(["Shift+Enter", "Control+s"]);
    }
    // a button's Enter stays its own click (not claimed, not prevented: kept from the notebook
    // only by Lumino's opt-out), and the canvas's Enter selects
    const button = outline(el).querySelector("button") as HTMLButtonElement;
    let prevented: boolean | null = null;
    const seen = (e: Event) => {
      prevented = e.defaultPrevented;
    };
    document.addEventListener("keydown", seen, true);
    expect(keysNotebookTakes(button, ["Enter"])).toEqual([]);
    document.removeEventListener("keydown", seen, true);
    expect(prevented).toBe(false);
    expect(keysNotebookTakes(q(el, '[data-gradsight="canvas"]'), ["Enter"])).toEqual([]);
  });
});

describe("outline paging", () => {
  it("lists a huge group's nodes a page at a time, every one reachable", () => {
    const n = 3000;
    const nodes = Array.from({ length: n }, (_, i) =>
      node(`wide/MulBackward0#${i}`, {
        name: "MulBackward0",
        module: "wide",
        kind: i === 0 ? "root" : "op",
        next: i + 1 < n ? [[`wide/MulBackward0#${i + 1}`, 0]] : [],
      }),
    );
    const { el } = mount(emptyGraph({ roots: ["wide/MulBackward0#0"], nodes }));
    // A lone group opens by itself, but not one this big.
    expect(groupEntry(el, "wide").getAttribute("aria-expanded")).toBe("false");
    click(groupEntry(el, "wide"));
    expect(outline(el).querySelectorAll("[data-node-id]")).toHaveLength(OUTLINE_PAGE);
    click(q(outline(el), '[data-more-of="wide"]'));
    expect(outline(el).querySelectorAll("[data-node-id]")).toHaveLength(n);
    expect(outline(el).querySelector("[data-more-of]")).toBeNull();
  });

  it("pages child groups too (10,000 layers of an MLP)", () => {
    const n = 3000;
    const nodes = Array.from({ length: n }, (_, i) =>
      node(`layers.${i}/AddmmBackward0#0`, {
        name: "AddmmBackward0",
        module: `layers.${i}`,
        next: i + 1 < n ? [[`layers.${i + 1}/AddmmBackward0#0`, 0]] : [],
      }),
    );
    const { el } = mount(emptyGraph({ roots: [nodes[0]?.id ?? ""], nodes }));
    click(groupEntry(el, "layers"));
    expect(outline(el).querySelectorAll("[data-group]")).toHaveLength(1 + OUTLINE_PAGE);
    click(q(outline(el), '[data-more-of="layers"]'));
    expect(outline(el).querySelectorAll("[data-group]")).toHaveLength(1 + n);
  });
});

describe("search", () => {
  it("finds nodes by op, module, parameter and variable name", () => {
    const graph = big();
    const head = graph.nodes.find((n) => n.id === "head/AddmmBackward0#0");
    if (head) head.variable = "logits";
    const { el } = mount(graph);
    const input = q<HTMLInputElement>(el, '[data-gradsight="search"]');
    const results = q(el, '[data-gradsight="search-results"]');
    type(input, "GeluBackward0");
    expect(results.querySelectorAll("[data-node-id]")).toHaveLength(12);
    expect(results.querySelector("[data-node-id]")?.getAttribute("data-node-name")).toBe("GeluBackward0");
    type(input, "layers.7 gelu");
    expect([...results.querySelectorAll("[data-node-id]")].map((b) => b.getAttribute("data-node-id"))).toEqual([GELU]);
    type(input, "layers.0.attn.qkv.weight");
    expect(results.querySelector("[data-node-id]")?.getAttribute("data-node-id")).toBe(
      "leaf:encoder.layers.0.attn.qkv.weight",
    );
    type(input, "logits");
    expect([...results.querySelectorAll("[data-node-id]")].map((b) => b.getAttribute("data-node-id"))).toEqual([
      "head/AddmmBackward0#0",
    ]);
    type(input, "MulBackward0");
    expect(results.querySelectorAll("[data-node-id]")).toHaveLength(50);
    expect(q(el, '[data-gradsight="search-status"]').textContent).toContain("1,920");
    type(input, "");
    expect(results.children).toHaveLength(0);
  });

  it("selects a hit, opens its groups and centres it", () => {
    const { el, model } = mount(big());
    type(q<HTMLInputElement>(el, '[data-gradsight="search"]'), "layers.7 gelu");
    click(q(el, `[data-gradsight="search-results"] [data-node-id="${GELU}"]`));
    expect(model.get("selected")).toBe(GELU);
    for (const path of ["encoder", "encoder.layers", "encoder.layers.7", "encoder.layers.7.mlp"]) {
      expect(groupEntry(el, path).getAttribute("aria-expanded"), path).toBe("true");
    }
    expect(nodeEntry(el, GELU)?.getAttribute("aria-current")).toBe("true");
    model.set("selected", "");
    clickCanvas(el, 400, 260);
    expect(model.get("selected")).toBe(GELU);
  });

  it("picks the first hit with Enter", () => {
    const { el, model } = mount(big());
    const input = q<HTMLInputElement>(el, '[data-gradsight="search"]');
    type(input, "EmbeddingBackward0");
    key(input, "Enter");
    expect(model.get("selected")).toBe("embed/EmbeddingBackward0#0");
  });
});

describe("selection from Python", () => {
  it("opens the node's groups and centres it", () => {
    const { el, model } = mount(big());
    model.pySet("selected", GELU);
    expect(groupEntry(el, "encoder.layers.7.mlp").getAttribute("aria-expanded")).toBe("true");
    expect(groupEntry(el, "encoder.layers.6").getAttribute("aria-expanded")).toBe("false");
    expect(inspector(el).getAttribute("data-node")).toBe(GELU);
    model.set("selected", "");
    clickCanvas(el, 400, 260);
    expect(model.get("selected")).toBe(GELU);
  });

  it("scrolls the outline, never the page around it, to show the selected entry", () => {
    const scroll = vi.fn(); // jsdom has no scrollIntoView: give it one to watch
    Object.defineProperty(Element.prototype, "scrollIntoView", { value: scroll, configurable: true });
    try {
      const { el, model } = mount(big());
      model.pySet("selected", GELU);
      model.pySet("graph", big()); // every live step re-selects: the notebook must not jump
      expect(nodeEntry(el, GELU)?.getAttribute("aria-current")).toBe("true");
      expect(scroll).not.toHaveBeenCalled();
    } finally {
      Reflect.deleteProperty(Element.prototype, "scrollIntoView");
    }
  });

  it("shows a folded leaf beside its consumer, and selects it from the canvas", () => {
    const { el, model } = mount(big());
    const leaf = "leaf:encoder.layers.3.mlp.fc1.weight";
    model.pySet("selected", leaf);
    expect(nodeEntry(el, leaf)?.getAttribute("aria-current")).toBe("true");
    model.set("selected", "");
    clickCanvas(el, 400, 260);
    expect(model.get("selected")).toBe(leaf);
  });
});

describe("the canvas", () => {
  it("moves a cursor between connected items with the arrows; Enter opens a group", () => {
    const { el } = mount(big());
    const canvas = q(el, '[data-gradsight="canvas"]');
    canvas.focus();
    key(canvas, "ArrowDown"); // from the root (SumBackward0) toward the leaves: the head group
    key(canvas, "Enter");
    expect(groupEntry(el, "head").getAttribute("aria-expanded")).toBe("true");
    // The cursor stays on the group (now its frame's header): Enter again closes it.
    key(canvas, "Enter");
    expect(groupEntry(el, "head").getAttribute("aria-expanded")).toBe("false");
  });

  it("selects a node with Enter", () => {
    const { el, model } = mount(big());
    const canvas = q(el, '[data-gradsight="canvas"]');
    canvas.focus();
    key(canvas, "Enter");
    expect(model.get("selected")).toBe("SumBackward0#0");
  });
});

describe("path from the roots to the selection", () => {
  it("marks every ancestor of the selected node and nothing else", () => {
    const graph = transformerGraph(3);
    const ix = indexNodes(graph.nodes, graph.roots);
    const leaf = ix.indexOf.get("leaf:encoder.layers.1.mlp.fc1.weight") as number;
    const on = pathToRoots(ix, leaf);
    const marked = [...on.keys()].filter((i) => on[i]).map((i) => ix.ids[i]);
    expect(marked).toContain("SumBackward0#0");
    expect(marked).toContain("encoder.layers.2.attn/AddmmBackward0#0");
    expect(marked).toContain("encoder.layers.1.mlp/AddmmBackward0#0");
    expect(marked).not.toContain("encoder.layers.1.mlp/GeluBackward0#0");
    expect(marked).not.toContain("leaf:encoder.layers.1.mlp.fc2.weight");
    expect(marked.filter((id) => id?.startsWith("leaf:"))).toEqual(["leaf:encoder.layers.1.mlp.fc1.weight"]);
  });

  it("lights the items and frames that show those nodes", () => {
    const graph = transformerGraph(3);
    const ix = indexNodes(graph.nodes, graph.roots);
    const tree = buildGroups(ix);
    const expanded = new Set(["encoder", "encoder.layers"].map((p) => tree.byPath.get(p) as number));
    const visible = computeVisible(ix, tree, { flat: false, foldLeaves: true, expanded });
    const target = ix.indexOf.get("encoder.layers.1.mlp/AddmmBackward0#0") as number;
    const items = itemsOnPath(visible, pathToRoots(ix, target));
    const lit = (path: string) => items[visible.groupItem[tree.byPath.get(path) as number] as number];
    expect(lit("encoder")).toBe(1);
    expect(lit("encoder.layers")).toBe(1);
    expect(lit("encoder.layers.1")).toBe(1);
    expect(lit("encoder.layers.2")).toBe(1);
    expect(lit("encoder.layers.0")).toBe(0);
    expect(lit("embed")).toBe(0);
    expect(items[visible.nodeItem[0] as number]).toBe(1);
  });
});

describe("controls", () => {
  const shown = (el: HTMLElement) => q(el, '[data-gradsight="shown"]').textContent ?? "";

  it("switches to a flat view of every node and back", () => {
    const { el } = mount(big());
    const flat = q(el, '[data-action="flat"]');
    const before = shown(el);
    click(flat);
    expect(flat.getAttribute("aria-pressed")).toBe("true");
    expect(shown(el)).toMatch(/^2,\d{3} shown/);
    click(flat);
    expect(flat.getAttribute("aria-pressed")).toBe("false");
    expect(shown(el)).toBe(before);
  });

  it("shows folded leaves as nodes of their own on request", () => {
    const { el } = mount(big());
    click(q(el, '[data-action="flat"]'));
    const folded = Number((shown(el).split(" ")[0] ?? "").replace(",", ""));
    const leaves = q(el, '[data-action="leaves"]');
    click(leaves);
    expect(leaves.getAttribute("aria-pressed")).toBe("true");
    expect(Number((shown(el).split(" ")[0] ?? "").replace(",", ""))).toBe(folded + 12 * 5 + 3);
  });

  it("collapses every group", () => {
    const { el, model } = mount(big());
    model.pySet("selected", GELU);
    click(q(el, '[data-action="collapse-all"]'));
    expect(groupEntry(el, "encoder").getAttribute("aria-expanded")).toBe("false");
  });

  it("fit and zoom buttons drive the canvas view", () => {
    const { el, model } = mount(big());
    model.pySet("selected", GELU);
    click(q(el, '[data-action="fit"]'));
    model.set("selected", "");
    clickCanvas(el, 400, 260);
    expect(model.get("selected")).not.toBe(GELU);
  });
});

describe("the host's theme", () => {
  // A dark host as the page resolves it: jsdom resolves no var(), so each --gs-* colour a probe of
  // palette.ts asks for comes back as a distinct dark grey, in the page only (a detached element
  // inherits nothing from the notebook).
  const DARK: Record<string, string> = {};
  ["--gs-bg", "--gs-bg2", "--gs-node-bg", "--gs-leaf-bg", "--gs-brand-bg", "--gs-border", "--gs-edge"].forEach(
    (name, i) => {
      DARK[name] = `rgb(${20 + i}, ${20 + i}, ${24 + i})`;
    },
  );
  const LIGHT = [DEFAULT_PALETTE.bg2, DEFAULT_PALETTE.nodeBg, DEFAULT_PALETTE.leafBg, DEFAULT_PALETTE.border];

  /** Each canvas's fillStyle and strokeStyle values, through a recording 2D context per canvas. */
  function recordColours(): Map<HTMLCanvasElement, string[]> {
    const colours = new Map<HTMLCanvasElement, string[]>();
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockImplementation(function (this: HTMLCanvasElement) {
      const seen = colours.get(this) ?? [];
      colours.set(this, seen);
      return new Proxy({} as Record<string | symbol, unknown>, {
        get: (target, prop) => (prop in target ? target[prop] : () => {}),
        set(target, prop, value) {
          if (prop === "fillStyle" || prop === "strokeStyle") seen.push(String(value));
          target[prop] = value;
          return true;
        },
      }) as unknown as CanvasRenderingContext2D;
    } as unknown as typeof HTMLCanvasElement.prototype.getContext);
    return colours;
  }

  /** ResizeObservers that report only when told: the browser's first layout of an attached element. */
  function fakeResizeObservers(): (target: Element) => void {
    const observers: { fn: ResizeObserverCallback; targets: Set<Element>; self: ResizeObserver }[] = [];
    vi.stubGlobal(
      "ResizeObserver",
      class {
        private readonly entry: (typeof observers)[number];
        constructor(fn: ResizeObserverCallback) {
          this.entry = { fn, targets: new Set(), self: this as unknown as ResizeObserver };
          observers.push(this.entry);
        }
        observe(target: Element): void {
          this.entry.targets.add(target);
        }
        unobserve(target: Element): void {
          this.entry.targets.delete(target);
        }
        disconnect(): void {
          this.entry.targets.clear();
        }
      },
    );
    return (target) => {
      for (const o of observers) if (o.targets.has(target)) o.fn([], o.self);
    };
  }

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("draws the canvas and minimap dark in a dark notebook that attaches the view after render", async () => {
    const colours = recordColours();
    const layOut = fakeResizeObservers();
    const real = globalThis.getComputedStyle;
    vi.stubGlobal("getComputedStyle", (el: Element, pseudo?: string | null) => {
      const asked = /^var\((--gs-[\w-]+)\)$/.exec((el as HTMLElement).style?.getPropertyValue("color") ?? "")?.[1];
      const dark = asked === undefined || !el.isConnected ? undefined : DARK[asked];
      return dark === undefined ? real(el, pseudo) : ({ color: dark } as CSSStyleDeclaration);
    });
    // anywidget renders into an element the notebook attaches afterwards.
    const el = document.createElement("div");
    const model = fakeModel({ graph: big() });
    const cleanup = widget.render({ model, el });
    try {
      await nextFrame();
      await nextFrame();
      document.body.append(el);
      for (const seen of colours.values()) seen.length = 0;
      const canvas = q<HTMLCanvasElement>(el, '[data-gradsight="canvas"]');
      layOut(canvas);
      await nextFrame();
      const onCanvas = colours.get(canvas) ?? [];
      const elsewhere = [...colours].filter(([c]) => c !== canvas).flatMap(([, seen]) => seen);
      expect(onCanvas).toContain(DARK["--gs-bg2"]); // the collapsed groups' boxes
      expect(onCanvas.filter((c) => LIGHT.includes(c))).toEqual([]);
      // The minimap's shrunk scene is drawn again, on its backdrop of bg2.
      expect(elsewhere).toContain(DARK["--gs-bg2"]);
      expect(elsewhere.filter((c) => LIGHT.includes(c))).toEqual([]);
    } finally {
      cleanup();
      el.remove();
    }
  });
});

describe("benchmark hooks", () => {
  it("marks the first complete paint of each graph on the root", async () => {
    const mark = vi.spyOn(performance, "mark");
    const { el, model } = mount(big());
    const root = q(el, ".gradsight");
    await nextFrame();
    await nextFrame();
    expect(root.getAttribute("data-painted")).toBe("1");
    expect(mark).toHaveBeenCalledWith("gradsight:painted", expect.anything());
    model.pySet("graph", big());
    await nextFrame();
    await nextFrame();
    expect(root.getAttribute("data-painted")).toBe("2");
    model.pySet("graph", sampleGraph());
    expect(root.getAttribute("data-painted")).toBe("3");
  });

  it("exposes recent frame times on window.__gradsight", () => {
    mount(big());
    const hooks = (window as unknown as { __gradsight: { frames(clear?: boolean): number[]; clear(): void } })
      .__gradsight;
    recordFrame(10, 14.5);
    expect(hooks.frames().at(-1)).toBe(4.5);
    expect(hooks.frames(true).at(-1)).toBe(4.5);
    expect(hooks.frames()).toEqual([]);
    recordFrame(20, 21);
    hooks.clear();
    expect(hooks.frames()).toEqual([]);
  });
});

describe("cleanup", () => {
  it("removes every listener and cancels every timer and frame", () => {
    vi.useFakeTimers();
    const { model, cleanup, el } = mount(big());
    model.pySet("selected", GELU);
    click(q(el, '[data-action="flat"]'));
    expect(vi.getTimerCount()).toBeGreaterThan(0);
    cleanup();
    expect(model.handlerCount()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("outline selectors", () => {
  it("find an entry whose path holds quotes, backslashes and newlines", () => {
    const el = document.createElement("div");
    const path = 'blocks["a\\"b"]\nc\\d';
    const entry = document.createElement("button");
    entry.setAttribute("data-group", path);
    el.append(entry);
    document.body.append(el);
    expect(el.querySelector(`[data-group="${cssString(path)}"]`)).toBe(entry);
    el.remove();
  });
});
