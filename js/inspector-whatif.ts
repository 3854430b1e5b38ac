// The inspector's what-if parts: a leaf's requires_grad checkbox for the next re-run (a copy of the
// toggles panel's [data-toggle="requires-grad"][data-leaf] box, marked data-scope-toggle so that the
// contract selector stays unique), freeze / no_grad / detach shortcuts for an op node's module (detach for the cell
// variable it assigned, and for this very node's output in runnable and live debuggers), and the [data-section="why"] answer to "why is this leaf's .grad None or
// zero" from an inspect reply. Checked states come from toggle-inputs.ts, shared with the panel.

import { h } from "./dom";
import { section } from "./inspector-sections";
import { labelledBox } from "./toggle-inputs";
import { canRequireGrad, NO_GRAD_DTYPE, type ToggleState } from "./toggles";
import { whyView } from "./why-view";
import type { WireNode, WireWhy } from "./wire";

/** The requires_grad box of a leaf node (why there is none for an integer leaf), or null when the
 * next re-run cannot change it. */
export function leafToggle(node: WireNode, state: ToggleState | null): HTMLElement | null {
  const name = node.leaf?.name;
  if (!state || !name || !state.base.has(name)) return null;
  const dtype = node.leaf?.dtype ?? "";
  if (!canRequireGrad(dtype))
    return h(
      "p",
      { class: "gs-leaf-toggle gs-no-toggle", "data-no-toggle": dtype, title: NO_GRAD_DTYPE },
      `requires_grad: not for ${withArticle(dtype)} tensor (${NO_GRAD_DTYPE})`,
    );
  return h(
    "p",
    { class: "gs-leaf-toggle" },
    labelledBox(
      { kind: "requires-grad", attr: "leaf", name },
      "requires_grad in the next re-run",
      `requires_grad of ${name}`,
      true,
    ),
  );
}

/** "an int64", "a uint8" ("you-int"), "a bool": the article as the dtype is read out. */
function withArticle(dtype: string): string {
  return /^[aeio]/i.test(dtype) ? `an ${dtype}` : `a ${dtype}`;
}

/** "What if" shortcuts for an op node's module and variable, or null when there is nothing to toggle. */
export function whatIfSection(node: WireNode, state: ToggleState | null): HTMLElement | null {
  if (!state || node.kind === "leaf") return null;
  const m = node.module;
  const parts: HTMLElement[] = [];
  if (m !== null && state.modules.has(m)) {
    const shown = m === "" ? "the whole model" : m;
    parts.push(
      labelledBox({ kind: "freeze", attr: "module", name: m }, `freeze ${shown}`),
      labelledBox({ kind: "no-grad", attr: "module", name: m }, `run ${shown} under no_grad`),
      labelledBox({ kind: "detach", attr: "module", name: m }, `detach the output of ${shown}`),
    );
  }
  const v = node.variable;
  if (v !== null && state.variables.has(v))
    parts.push(labelledBox({ kind: "detach", attr: "variable", name: v }, `detach ${v}`));
  if (state.detachNodes)
    parts.push(
      labelledBox({ kind: "detach", attr: "edge", name: node.id }, "detach here: cut the edges into this node"),
    );
  if (parts.length === 0) return null;
  return section("what-if", "What if (next re-run)", h("div", { class: "gs-what-if" }, ...parts));
}

/** Why the leaf's gradient is None or zero (from the inspect reply). */
export function whySection(why: WireWhy, nodeName: (id: string) => string | null): HTMLElement {
  const title =
    why.reason === "zero"
      ? "Why the gradient is zero"
      : why.reason === "nonfinite"
        ? "Where the gradient became NaN / Inf"
        : "Why .grad is None";
  return section("why", title, whyView(why, nodeName));
}
