// The inspector's skeleton, built at once from the wire graph when a node is selected: the header
// (identity, what an opaque node hides, grad norm, "not executed"), saved values, gradients in and
// out, and the leaf. Every place a tensor can appear is a slot ([data-tensor-slot="<key>"], keys as
// in an inspect reply) that inspect-place.ts later fills with the full view from Python.

import { type Child, h } from "./dom";
import { formatNumber, formatShape } from "./format";
import { displayName, NOT_EXECUTED_TEXT, OPAQUE_TEXT } from "./node-label";
import { tensorHeadline, tensorView, valueView } from "./values";
import type { WireLeaf, WireNode, WireTensor } from "./wire";

const NO_GRAD_HINT =
  "no gradient recorded — gradients are captured when gradsight runs backward itself: " +
  "gs.debugger(model, inputs=…, loss=…) or gs.debugger(fn)";
const LEAF_OUT_HINT =
  "a leaf passes no gradient on: what reached it is under Gradient in, and it goes into the tensor's .grad";

export type SectionName = "saved" | "grad-in" | "grad-out" | "leaf";

export const SECTION_TITLES: Record<SectionName, string> = {
  saved: "Saved for backward",
  "grad-in": "Gradient in (grad_outputs)",
  "grad-out": "Gradient out (grad_inputs)",
  leaf: "Leaf tensor",
};

export function section(name: string, title: string, ...children: Child[]): HTMLElement {
  return h("section", { class: "gs-section", "data-section": name }, h("h4", {}, title), ...children);
}

export function hint(text: string): HTMLElement {
  return h("p", { class: "gs-hint" }, text);
}

/** A definition list of label/value rows, skipping rows without a value. */
export function rows(entries: readonly [string, string | null][]): HTMLElement {
  const dl = h("dl", { class: "gs-rows" });
  for (const [label, value] of entries) {
    if (value === null || value === "") continue;
    dl.append(h("dt", {}, label), h("dd", { "data-field": label }, h("bdi", {}, value)));
  }
  return dl;
}

export function headerSection(node: WireNode): HTMLElement {
  const outputs = node.outputs.map((o) => tensorHeadline(o)).join(", ");
  const opaque = node.opaque_kind === null ? null : OPAQUE_TEXT[node.opaque_kind];
  return h(
    "header",
    { class: "gs-inspector-header", "data-section": "header" },
    h(
      "h3",
      { class: "gs-title" },
      h("bdi", {}, displayName(node)),
      " ",
      h("span", { class: `gs-badge gs-badge-${node.kind}` }, node.kind),
      opaque === null
        ? null
        : h("span", { class: "gs-badge gs-badge-opaque", "data-opaque-kind": node.opaque_kind }, opaque),
    ),
    node.executed === false
      ? h("p", { class: "gs-warn-line", "data-executed-note": "false" }, NOT_EXECUTED_TEXT)
      : null,
    rows([
      ["name", node.name],
      ["id", node.id],
      ["module", node.module],
      ["variable", node.variable],
      ["source", node.source],
      ["outputs", outputs || null],
      ["grad_norm", node.grad_norm === null ? null : formatNumber(node.grad_norm)],
    ]),
  );
}

export function savedSection(node: WireNode): HTMLElement {
  if (node.saved.length === 0) return section("saved", SECTION_TITLES.saved, hint("nothing saved for backward"));
  const entries = node.saved.map(({ name, value }) =>
    h(
      "div",
      {
        class: "gs-saved",
        "data-saved-name": name,
        "data-saved-type": value.type,
        "data-tensor-slot": `saved:${name}`,
      },
      h("code", { class: "gs-saved-name" }, h("bdi", {}, name)),
      valueView(value, `saved:${name}`),
    ),
  );
  return section("saved", SECTION_TITLES.saved, ...entries);
}

export function gradSection(
  name: "grad-in" | "grad-out",
  grads: readonly (WireTensor | null)[],
  leaf = false,
): HTMLElement {
  const title = SECTION_TITLES[name];
  if (grads.length === 0) return section(name, title, hint(leaf && name === "grad-out" ? LEAF_OUT_HINT : NO_GRAD_HINT));
  const prefix = name === "grad-in" ? "grad_in" : "grad_out";
  const entries = grads.map((g, i) =>
    h(
      "div",
      { class: "gs-grad", "data-index": i, "data-tensor-slot": `${name}:${i}` },
      h("code", { class: "gs-saved-name" }, `${prefix}[${i}]`),
      g === null ? h("code", { class: "gs-scalar" }, "None") : tensorView(g),
    ),
  );
  return section(name, title, ...entries);
}

export function leafSection(leaf: WireLeaf): HTMLElement {
  return section(
    "leaf",
    SECTION_TITLES.leaf,
    rows([
      ["name", leaf.name ?? "(unnamed)"],
      ["shape", formatShape(leaf.shape)],
      ["dtype", leaf.dtype],
      ["requires_grad", leaf.requires_grad ? "True" : "False"],
      ["is_parameter", leaf.is_parameter ? "True" : "False"],
    ]),
    h("h5", {}, ".grad"),
    h(
      "div",
      { class: "gs-leaf-tensor", "data-tensor-slot": "leaf:grad" },
      leaf.grad === null ? h("code", { class: "gs-scalar", "data-grad": "none" }, "None") : tensorView(leaf.grad),
    ),
  );
}
