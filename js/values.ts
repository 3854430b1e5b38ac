// DOM views of wire values for the inspector: tensor summaries (shape, dtype, device, statistics,
// the "freed" badge) and saved values of every type (scalars as Python would print them).
// Text only, through dom.ts.

import { h } from "./dom";
import { formatCount, formatNumber, formatShape } from "./format";
import type { WireTensor, WireValue } from "./wire";

export const FREED_TEXT = "freed by backward — summary taken before";
export const NOT_COUNTED_TEXT = "NaN or Inf values (seen through a non-finite norm, not counted)";

const STATS: readonly [string, (t: WireTensor) => string][] = [
  ["min", (t) => formatNumber(t.min)],
  ["max", (t) => formatNumber(t.max)],
  ["mean", (t) => formatNumber(t.mean)],
  ["std", (t) => formatNumber(t.std)],
  ["norm", (t) => formatNumber(t.norm)],
  ["NaN", (t) => formatCount(t.nan_count)],
  ["Inf", (t) => formatCount(t.inf_count)],
];

/** `(25,) float32 cpu`, the one-line identity of a tensor. */
export function tensorHeadline(t: { shape: readonly number[]; dtype: string; device: string }): string {
  return `${formatShape(t.shape)} ${t.dtype} ${t.device}`;
}

export function tensorView(t: WireTensor): HTMLElement {
  const counted = [
    (t.nan_count ?? 0) > 0 ? `${formatCount(t.nan_count)} NaN` : null,
    (t.inf_count ?? 0) > 0 ? `${formatCount(t.inf_count)} Inf` : null,
  ].filter((x) => x !== null);
  // `nonfinite` also covers a tensor whose values were gone before they could be counted.
  const bad = t.nonfinite || counted.length > 0;
  const alert = counted.length > 0 ? `${counted.join(" and ")} values` : NOT_COUNTED_TEXT;
  const meta = h(
    "div",
    { class: "gs-tensor-meta" },
    h("span", { class: "gs-shape" }, formatShape(t.shape)),
    ` ${t.dtype} ${t.device}`,
    h("span", { class: "gs-muted" }, ` · ${formatCount(t.numel)} ${t.numel === 1 ? "element" : "elements"}`),
    t.layout !== "strided" ? h("span", { class: "gs-muted" }, ` · ${t.layout}`) : null,
  );
  const stats = h("dl", { class: "gs-stats" });
  for (const [name, show] of STATS) {
    const flagged = bad && (name === "NaN" || name === "Inf") && show(t) !== "0";
    stats.append(h("dt", {}, name), h("dd", { class: flagged ? "gs-bad" : null, "data-stat": name }, show(t)));
  }
  return h(
    "div",
    { class: bad ? "gs-tensor gs-tensor-nonfinite" : "gs-tensor" },
    meta,
    bad ? h("div", { class: "gs-alert", "data-nonfinite-alert": "", role: "note" }, alert) : null,
    t.freed ? h("span", { class: "gs-badge gs-badge-freed", "data-freed": "true" }, FREED_TEXT) : null,
    stats,
    t.note !== null ? h("div", { class: "gs-note" }, t.note) : null,
  );
}

/** Python's spelling of a scalar saved value, or null for values that need more than one line. */
export function scalarText(v: WireValue): string | null {
  switch (v.type) {
    case "none":
      return "None";
    case "bool":
      return v.value ? "True" : "False";
    case "int":
    case "float":
      // `text` is Python's own repr: exact for big ints, and says nan / inf where value is null.
      return v.text;
    case "str":
      return `'${v.value}'`;
    case "tuple": {
      const items = v.items.map(scalarText);
      if (items.some((x) => x === null)) return null;
      return `(${items.join(", ")}${items.length === 1 ? "," : ""})`;
    }
    default:
      return null;
  }
}

/**
 * One saved value. Tuples of tensors list their items (nesting is shallow: a few levels at most).
 * `slot` is the inspector key of the value (`saved:_saved_indices`): tuple items become the slots
 * `saved:_saved_indices[0]`, … that an inspect reply fills in (Python names them the same way).
 */
export function valueView(v: WireValue, slot: string | null = null): HTMLElement {
  if (v.type === "tensor") return tensorView(v);
  if (v.type === "unavailable") return h("div", { class: "gs-unavailable" }, "unavailable: ", v.reason);
  const text = scalarText(v);
  if (text !== null || v.type !== "tuple") return h("code", { class: "gs-scalar" }, text ?? "");
  const list = h("ol", { class: "gs-tuple", start: 0 });
  v.items.forEach((item, i) => {
    const key = slot === null ? null : `${slot}[${i}]`;
    list.append(h("li", { "data-tensor-slot": key }, valueView(item, key)));
  });
  return h("div", { class: "gs-tuple-wrap" }, h("span", { class: "gs-muted" }, `tuple of ${v.items.length}`), list);
}
