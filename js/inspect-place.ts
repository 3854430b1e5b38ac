// Where the tensors of an inspect reply go in the inspector: each fills the skeleton's slot with the
// same key (keeping the entry, its name and data-saved-name, so nothing is duplicated) and marks it
// [data-tensor-key]; a tensor the skeleton had no slot for gets a new entry in its section (the
// section itself is created when missing). The leaf's .grad history goes in the leaf section.

import { h } from "./dom";
import { SECTION_TITLES, type SectionName, section } from "./inspector-sections";
import { historyTable } from "./tensor-view";
import type { WireGradStep, WireTensorView } from "./wire";

/** Put `body` (the full view of `tv`) in its place; returns the entry that now holds it. */
export function placeTensor(panel: HTMLElement, tv: WireTensorView, body: HTMLElement): HTMLElement {
  const entry = findEntry(panel, tv.key) ?? newEntry(panel, tv);
  entry.setAttribute("data-tensor-key", tv.key);
  for (const child of [...entry.children]) if (!child.classList.contains("gs-saved-name")) child.remove();
  entry.append(body);
  return entry;
}

/** The entry holding key `key` (a skeleton slot, or one already filled by an earlier reply). */
export function findEntry(panel: HTMLElement, key: string): HTMLElement | null {
  // Compared as attributes rather than through a selector: keys hold user-chosen names.
  for (const el of panel.querySelectorAll<HTMLElement>("[data-tensor-key], [data-tensor-slot]")) {
    if (el.getAttribute("data-tensor-key") === key || el.getAttribute("data-tensor-slot") === key) return el;
  }
  return null;
}

export function placeHistory(panel: HTMLElement, history: readonly WireGradStep[]): void {
  const leaf = sectionOf(panel, "leaf");
  leaf.querySelector("[data-history]")?.remove();
  leaf.append(historyTable(history));
}

function newEntry(panel: HTMLElement, tv: WireTensorView): HTMLElement {
  const sec = sectionOf(panel, tv.section);
  // The skeleton's placeholder ("no gradient recorded", "nothing saved") is now wrong.
  for (const p of sec.querySelectorAll(":scope > .gs-hint")) p.remove();
  const index = /:(\d+)$/.exec(tv.key)?.[1];
  const attrs =
    tv.section === "saved"
      ? { class: "gs-saved", "data-saved-name": tv.name, "data-saved-type": "tensor" }
      : tv.section === "leaf"
        ? { class: "gs-leaf-tensor" }
        : { class: "gs-grad", "data-index": index ?? null };
  const entry = h("div", attrs, h("code", { class: "gs-saved-name" }, tv.name));
  // A leaf's value reads best before its .grad (the skeleton's `.grad` heading).
  const before = tv.section === "leaf" && tv.key === "leaf:value" ? sec.querySelector(":scope > h5") : null;
  if (before) before.before(entry);
  else sec.append(entry);
  return entry;
}

function sectionOf(panel: HTMLElement, name: SectionName): HTMLElement {
  const found = panel.querySelector<HTMLElement>(`:scope > [data-section="${name}"]`);
  if (found) return found;
  const created = section(name, SECTION_TITLES[name]);
  if (name === "leaf") {
    // The skeleton shows the leaf section first, right after the header and status line.
    const edges = panel.querySelector(':scope > [data-section="edges"]');
    if (edges) edges.before(created);
    else panel.append(created);
  } else {
    panel.append(created);
  }
  return created;
}
