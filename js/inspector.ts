// The inspector panel ([data-gradsight="inspector"], DESIGN §6): everything known about the
// selected node — identity, its `next` edges, what autograd saved for it, the gradients that flowed
// in and out, and for AccumulateGrad the leaf tensor. Rebuilt from the wire graph on each change.

import { type Child, h } from "./dom";
import { formatShape } from "./format";
import { displayName } from "./node-label";
import { tensorHeadline, tensorView, valueView } from "./values";
import type { WireGraph, WireLeaf, WireNode, WireTensor } from "./wire";

export interface InspectorEvents {
  /** An edge entry was clicked: select that node. */
  select(id: string): void;
}

const EMPTY_HINT =
  "Click a node (or focus it and press Enter) to see what autograd saved for it and the gradients that flowed through it.";
const NO_GRAD_HINT =
  "no gradient recorded — gradients are captured when gradsight runs backward itself: " +
  "gs.debugger(model, inputs=…, loss=…) or gs.debugger(fn)";

export class Inspector {
  readonly el: HTMLElement;
  private graph: WireGraph | null = null;
  private byId = new Map<string, WireNode>();
  private parents = new Map<string, string[]>();

  constructor(private readonly events: InspectorEvents) {
    this.el = h("aside", { class: "gs-inspector", "data-gradsight": "inspector", "aria-label": "node inspector" });
    this.el.addEventListener("click", this.onClick);
    this.show(null, null);
  }

  /** Show node `id` of `graph`; a hint when nothing (or an id the graph lacks) is selected. */
  show(graph: WireGraph | null, id: string | null): void {
    if (graph !== this.graph) this.index(graph);
    const node = id === null ? undefined : this.byId.get(id);
    if (!node) {
      const text = id === null || graph === null ? EMPTY_HINT : `Node ${id} is not in the current graph.`;
      this.el.replaceChildren(h("p", { class: "gs-hint" }, text));
      this.el.removeAttribute("data-node");
      return;
    }
    this.el.setAttribute("data-node", node.id);
    this.el.replaceChildren(this.header(node));
    if (node.leaf) this.el.append(leafSection(node.leaf));
    this.el.append(
      this.edgesSection(node),
      savedSection(node),
      gradSection("grad-in", "Gradient in (grad_outputs)", "grad_in", node.grad_in),
      gradSection("grad-out", "Gradient out (grad_inputs)", "grad_out", node.grad_out),
    );
  }

  destroy(): void {
    this.el.removeEventListener("click", this.onClick);
  }

  private readonly onClick = (e: MouseEvent): void => {
    const target = e.target instanceof Element ? e.target.closest("button[data-node-id]") : null;
    const id = target?.getAttribute("data-node-id");
    if (id) this.events.select(id);
  };

  private index(graph: WireGraph | null): void {
    this.graph = graph;
    this.byId = new Map((graph?.nodes ?? []).map((n) => [n.id, n]));
    this.parents = new Map();
    for (const n of graph?.nodes ?? []) {
      for (const [target] of n.next) {
        if (target === null) continue;
        const list = this.parents.get(target) ?? [];
        if (!list.includes(n.id)) list.push(n.id);
        this.parents.set(target, list);
      }
    }
  }

  private header(node: WireNode): HTMLElement {
    const outputs = node.outputs.map((o) => tensorHeadline(o)).join(", ");
    return h(
      "header",
      { class: "gs-inspector-header", "data-section": "header" },
      h(
        "h3",
        { class: "gs-title" },
        displayName(node),
        " ",
        h("span", { class: `gs-badge gs-badge-${node.kind}` }, node.kind),
      ),
      rows([
        ["name", node.name],
        ["id", node.id],
        ["module", node.module],
        ["variable", node.variable],
        ["source", node.source],
        ["outputs", outputs || null],
      ]),
    );
  }

  private nodeButton(id: string): HTMLButtonElement {
    const node = this.byId.get(id);
    return h("button", { type: "button", class: "gs-link", "data-node-id": id }, node ? displayName(node) : id);
  }

  private edgesSection(node: WireNode): HTMLElement {
    const next = h("ol", { class: "gs-edge-list", start: 0 });
    for (const [target, nr] of node.next) {
      next.append(
        target === null
          ? h("li", { class: "gs-none", "data-edge-none": "true" }, "None (input needs no gradient)")
          : h("li", {}, this.nodeButton(target), h("span", { class: "gs-muted" }, ` input_nr ${nr}`)),
      );
    }
    const parents = this.parents.get(node.id) ?? [];
    return section(
      "edges",
      "Edges",
      h("h5", {}, "next_functions (toward the inputs)"),
      node.next.length > 0 ? next : hint("none: gradient stops here"),
      h("h5", {}, "used by (toward the root)"),
      parents.length > 0
        ? h("ul", { class: "gs-edge-list" }, ...parents.map((p) => h("li", {}, this.nodeButton(p))))
        : hint("none: a root"),
    );
  }
}

function section(name: string, title: string, ...children: Child[]): HTMLElement {
  return h("section", { class: "gs-section", "data-section": name }, h("h4", {}, title), ...children);
}

function hint(text: string): HTMLElement {
  return h("p", { class: "gs-hint" }, text);
}

/** A definition list of label/value rows, skipping rows without a value. */
function rows(entries: readonly [string, string | null][]): HTMLElement {
  const dl = h("dl", { class: "gs-rows" });
  for (const [label, value] of entries) {
    if (value === null || value === "") continue;
    dl.append(h("dt", {}, label), h("dd", { "data-field": label }, value));
  }
  return dl;
}

function savedSection(node: WireNode): HTMLElement {
  if (node.saved.length === 0) return section("saved", "Saved for backward", hint("nothing saved for backward"));
  const entries = node.saved.map(({ name, value }) =>
    h(
      "div",
      { class: "gs-saved", "data-saved-name": name, "data-saved-type": value.type },
      h("code", { class: "gs-saved-name" }, name),
      valueView(value),
    ),
  );
  return section("saved", "Saved for backward", ...entries);
}

function gradSection(name: string, title: string, prefix: string, grads: readonly (WireTensor | null)[]): HTMLElement {
  if (grads.length === 0) return section(name, title, hint(NO_GRAD_HINT));
  const entries = grads.map((g, i) =>
    h(
      "div",
      { class: "gs-grad", "data-index": i },
      h("code", { class: "gs-saved-name" }, `${prefix}[${i}]`),
      g === null ? h("code", { class: "gs-scalar" }, "None") : tensorView(g),
    ),
  );
  return section(name, title, ...entries);
}

function leafSection(leaf: WireLeaf): HTMLElement {
  return section(
    "leaf",
    "Leaf tensor",
    rows([
      ["name", leaf.name ?? "(unnamed)"],
      ["shape", formatShape(leaf.shape)],
      ["dtype", leaf.dtype],
      ["requires_grad", leaf.requires_grad ? "True" : "False"],
      ["is_parameter", leaf.is_parameter ? "True" : "False"],
    ]),
    h("h5", {}, ".grad"),
    leaf.grad === null ? h("code", { class: "gs-scalar", "data-grad": "none" }, "None") : tensorView(leaf.grad),
  );
}
