// The what-if checkboxes as DOM, shared by the toggles panel and the inspector: toggleBox() builds
// one input carrying the DOM contract (data-toggle plus data-leaf / data-module / data-variable,
// DESIGN §6), and syncToggleInputs() sets every such input under a root from the pending toggles
// (checked, disabled, and marked pending with `gs-pending` on its row). Both places call the same
// sync on every change of `pending`, so the panel and the inspector never disagree.

import { h } from "./dom";
import { isChanged, isChecked, isDisabled, readTarget, type ToggleState, type ToggleTarget } from "./toggles";

/** A checkbox for `t`, labelled for screen readers by `label`. */
export function toggleBox(t: ToggleTarget, label: string): HTMLInputElement {
  return h("input", {
    type: "checkbox",
    class: "gs-check",
    "data-toggle": t.kind,
    "data-leaf": t.attr === "leaf" ? t.name : null,
    "data-module": t.attr === "module" ? t.name : null,
    "data-variable": t.attr === "variable" ? t.name : null,
    "data-edge": t.attr === "edge" ? t.name : null,
    "aria-label": label,
    title: label,
  });
}

/** A checkbox with its visible text, as one clickable label. */
export function labelledBox(t: ToggleTarget, text: string, title = text): HTMLLabelElement {
  const box = toggleBox(t, title);
  return h("label", { class: "gs-check-label", "data-toggle-row": "" }, box, ` ${text}`);
}

/** Reflect `state` in every toggle input under `root`; rows ([data-toggle-row]) get `gs-pending`. */
export function syncToggleInputs(root: ParentNode, state: ToggleState): void {
  const rows = new Map<Element, boolean>();
  for (const input of root.querySelectorAll<HTMLInputElement>("input[data-toggle]")) {
    const t = readTarget(input);
    if (t === null) continue;
    input.checked = isChecked(state, t);
    input.disabled = isDisabled(state, t);
    const changed = isChanged(state, t);
    input.classList.toggle("gs-pending", changed);
    if (changed) input.setAttribute("data-pending", "true");
    else input.removeAttribute("data-pending");
    const row = input.closest("[data-toggle-row]");
    if (row) rows.set(row, (rows.get(row) ?? false) || changed);
  }
  for (const [row, changed] of rows) row.classList.toggle("gs-pending", changed);
}
