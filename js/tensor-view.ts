// The full view of one tensor from an inspect reply: the summary statistics (NaN / Inf counts
// prominent, never dropped), whether gradsight still held its values, Python's note, the histogram
// and the values preview; and the leaf's .grad history across backward calls. Text only.

import { h } from "./dom";
import { formatNumber } from "./format";
import { histogramView } from "./histogram";
import type { PreviewView } from "./preview";
import { tensorView } from "./values";
import type { WireGradStep, WireTensorView } from "./wire";

export const NOT_KEPT_TEXT = "values not kept (memory budget): statistics only";

export function richTensorView(tv: WireTensorView, preview: PreviewView | null): HTMLElement {
  const el = tensorView(tv.summary);
  el.setAttribute("data-kept", tv.kept ? "true" : "false");
  // Python's own "values not kept …" note is the more precise wording: show it instead of ours.
  const pythonSaysNotKept = tv.note?.startsWith("values not kept") ?? false;
  if (!tv.kept) {
    el.append(
      h("div", { class: "gs-note gs-not-kept", "data-not-kept": "" }, pythonSaysNotKept ? tv.note : NOT_KEPT_TEXT),
    );
  }
  if (tv.note !== null && tv.note !== tv.summary.note && !(pythonSaysNotKept && !tv.kept)) {
    el.append(h("div", { class: "gs-note", "data-note": "" }, tv.note));
  }
  if (tv.histogram) el.append(histogramView(tv.histogram));
  if (preview) el.append(preview.el);
  return el;
}

/** How .grad accumulates across backward calls (live mode): one row per step. */
export function historyTable(history: readonly WireGradStep[]): HTMLElement {
  const cell = (x: number | null): HTMLElement => h("td", {}, formatNumber(x));
  return h(
    "table",
    { class: "gs-history", "data-history": "" },
    h("caption", {}, "how .grad accumulates across backward calls"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col" }, "step"),
        h("th", { scope: "col" }, "gradient received (norm)"),
        h("th", { scope: "col" }, ".grad norm after"),
      ),
    ),
    h(
      "tbody",
      {},
      ...history.map((s) =>
        h("tr", { "data-step": s.step }, h("td", {}, String(s.step)), cell(s.received_norm), cell(s.grad_norm)),
      ),
    ),
  );
}
