// The what-if checkboxes as DOM, shared by the toggles panel and the inspector: toggleBox() builds
// one input carrying the DOM contract (data-toggle plus data-leaf / data-module / data-variable,
// DESIGN §6), and syncToggleInputs() sets every such input under a root from the pending toggles
// (checked, disabled, and marked pending with `gs-pending` on its row). Both places call the same
// sync on every change of `pending`, so the panel and the inspector never disagree.

import { h } from "./dom";
import { isChanged, isChecked, isDisabled, readTarget, type ToggleState, type ToggleTarget } from "./toggles";

// DESIGN §6's selectors ([data-toggle="no-grad"], [data-toggle="requires-grad"][data-leaf="…"]) must
// each match exactly one element (Playwright locators are strict). So only the panel's whole-step and
// leaf toggles carry their kind in `data-toggle`; toggles scoped to a module, a variable or an edge,
// and the inspector's copies of leaf toggles, carry it in `data-scope-toggle`.
const SELECTOR = "input[data-toggle], input[data-scope-toggle]";

/** Is `el` one of the what-if checkboxes (either attribute)? */
export function isToggleInput(el: EventTarget | null): el is HTMLInputElement {
  return el instanceof HTMLInputElement && el.matches(SELECTOR);
}

/** A checkbox for `t`, labelled for screen readers by `label`; `copy`: a second control for a toggle
 * the panel already has (the inspector's), kept out of the contract's selectors. */
export function toggleBox(t: ToggleTarget, label: string, copy = false): HTMLInputElement {
  const contract = !copy && (t.attr === null || t.attr === "leaf");
  return h("input", {
    type: "checkbox",
    class: "gs-check",
    [contract ? "data-toggle" : "data-scope-toggle"]: t.kind,
    "data-leaf": t.attr === "leaf" ? t.name : null,
    "data-module": t.attr === "module" ? t.name : null,
    "data-variable": t.attr === "variable" ? t.name : null,
    "data-edge": t.attr === "edge" ? t.name : null,
    "aria-label": label,
    title: label,
  });
}

/** A checkbox with its visible text, as one clickable label. */
export function labelledBox(t: ToggleTarget, text: string, title = text, copy = false): HTMLLabelElement {
  const box = toggleBox(t, title, copy);
  return h("label", { class: "gs-check-label", "data-toggle-row": "" }, box, " ", h("bdi", {}, text)); // names a module
}

/** Reflect `state` in every toggle input under `root`; rows ([data-toggle-row]) get `gs-pending`. */
export function syncToggleInputs(root: ParentNode, state: ToggleState): void {
  const rows = new Map<Element, boolean>();
  for (const input of root.querySelectorAll<HTMLInputElement>(SELECTOR)) {
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
