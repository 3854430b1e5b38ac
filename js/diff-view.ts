// What changed between two runs ([data-gradsight="diff"], from the `diff` trait): the loss and the
// bytes saved for backward before → after, the leaves that lost or gained a gradient, the nodes the
// later run removed (no longer in the graph, so listed here) and how many it added (those are
// marked `gs-added` on the graph by the view), and a table of per-leaf gradient norms with their
// ratio, biggest changes first and highlighted. Hidden while `diff` is null.

import { h } from "./dom";
import { formatBytes, formatCount, formatNumber } from "./format";
import type { WireDiff, WireHistoryEntry } from "./wire";

export interface DiffEvents {
  /** Stop comparing (baseline -1). */
  close(): void;
}

/** A ratio of gradient norms this far from 1 (either way) is highlighted. */
export const BIG_RATIO = 10;

export class DiffView {
  readonly el: HTMLElement;
  private readonly onClick = (e: Event): void => {
    if (e.target instanceof Element && e.target.closest('[data-action="close-diff"]')) this.events.close();
  };

  constructor(private readonly events: DiffEvents) {
    this.el = h("section", {
      class: "gs-banner gs-diff",
      "data-gradsight": "diff",
      "aria-label": "what changed",
      hidden: true,
    });
    this.el.addEventListener("click", this.onClick);
  }

  /** Show `diff` (null: hide); `history` names the two runs. */
  set(diff: WireDiff | null, history: readonly WireHistoryEntry[]): void {
    this.el.hidden = diff === null;
    if (diff === null) {
      this.el.replaceChildren();
      return;
    }
    const name = (i: number): (string | HTMLElement)[] => {
      const e = history.find((x) => x.index === i);
      return e ? [`run #${i} (`, h("bdi", {}, e.label), ")"] : [`run #${i}`];
    };
    this.el.setAttribute("data-before", String(diff.before));
    this.el.setAttribute("data-after", String(diff.after));
    const title = h(
      "h4",
      { class: "gs-diff-title", "data-diff": "runs" },
      ...name(diff.after),
      " compared with ",
      ...name(diff.before),
    );
    this.el.replaceChildren(
      h(
        "div",
        { class: "gs-diff-head" },
        title,
        h("button", { type: "button", class: "gs-button", "data-action": "close-diff" }, "Stop comparing"),
      ),
      h(
        "div",
        { class: "gs-diff-facts" },
        h("span", { "data-diff": "loss" }, `loss ${formatNumber(diff.loss.before)} → ${formatNumber(diff.loss.after)}`),
        h(
          "span",
          { "data-diff": "saved-bytes" },
          `saved for backward ${formatBytes(diff.saved_bytes.before)} → ${formatBytes(diff.saved_bytes.after)}`,
        ),
        h(
          "span",
          { "data-diff": "added", "data-count": diff.added.length },
          diff.added.length === 0 ? "no nodes added" : `${formatCount(diff.added.length)} added (marked on the graph)`,
        ),
      ),
      nameList("lost-grad", "lost their gradient", diff.lost_grad),
      nameList("gained-grad", "gained a gradient", diff.gained_grad),
      removedList(diff.removed),
      normTable(diff.grad_norms),
    );
  }

  destroy(): void {
    this.el.removeEventListener("click", this.onClick);
  }
}

function block(kind: string, title: string, body: HTMLElement, empty: boolean): HTMLElement {
  return h("div", { class: `gs-diff-block gs-diff-${kind}`, hidden: empty }, h("h5", {}, title), body);
}

function nameList(kind: string, title: string, names: readonly string[]): HTMLElement {
  const list = h("ul", { class: "gs-diff-list", "data-diff": kind }, ...names.map((n) => h("li", {}, h("bdi", {}, n))));
  return block(
    kind,
    `${formatCount(names.length)} ${names.length === 1 ? "leaf" : "leaves"} ${title}`,
    list,
    names.length === 0,
  );
}

function removedList(removed: WireDiff["removed"]): HTMLElement {
  const list = h(
    "ul",
    { class: "gs-diff-list", "data-diff": "removed" },
    ...removed.map((r) =>
      h(
        "li",
        { "data-removed-id": r.id, title: r.id },
        h("code", {}, h("bdi", {}, r.name)),
        r.module === null ? null : h("span", { class: "gs-muted" }, " ", h("bdi", {}, r.module)),
      ),
    ),
  );
  const title = `${formatCount(removed.length)} node${removed.length === 1 ? "" : "s"} removed (no longer in the graph)`;
  return block("removed", title, list, removed.length === 0);
}

/** after / before; ±Infinity for a gradient that appeared or vanished; null when neither side is known. */
export function normRatio(before: number | null, after: number | null): number | null {
  if (!Number.isFinite(after ?? 0) || !Number.isFinite(before ?? 0)) return Number.NaN; // NaN/Inf: no ratio, a big change
  if (before === null) return after === null ? null : Infinity;
  if (after === null) return 0;
  if (before === 0) return after === 0 ? 1 : Infinity;
  return after / before;
}

export function isBigChange(ratio: number | null): boolean {
  return ratio !== null && (Number.isNaN(ratio) || ratio >= BIG_RATIO || ratio <= 1 / BIG_RATIO);
}

function ratioText(ratio: number | null, before: number | null, after: number | null): string {
  if (ratio === null) return "—";
  if (Number.isNaN(ratio)) return `→ ${formatNumber(after)}`; // to (or from) NaN/Inf
  if (ratio === Infinity) return before === null ? "new" : "from 0";
  if (ratio === 0) return after === null ? "gone" : "to 0";
  return `×${formatNumber(ratio)}`;
}

function normTable(norms: WireDiff["grad_norms"]): HTMLElement {
  const change = (r: number | null): number =>
    r === null ? -1 : r === 0 || r === Infinity || Number.isNaN(r) ? Infinity : Math.abs(Math.log(r));
  const rows = norms
    .map((n) => ({ ...n, ratio: normRatio(n.before, n.after) }))
    .sort((a, b) => change(b.ratio) - change(a.ratio));
  const body = rows.map((r) => {
    const big = isBigChange(r.ratio);
    return h(
      "tr",
      { class: big ? "gs-diff-big" : null, "data-big": big ? "true" : null, "data-leaf-name": r.name },
      h("th", { scope: "row" }, h("code", {}, h("bdi", {}, r.name))),
      h("td", {}, formatNumber(r.before)),
      h("td", {}, formatNumber(r.after)),
      h("td", { "data-ratio": "" }, ratioText(r.ratio, r.before, r.after)),
    );
  });
  const table = h(
    "table",
    { class: "gs-diff-norms", "data-diff": "grad-norms" },
    h("caption", {}, "gradient norm of each leaf (biggest changes first)"),
    h("thead", {}, h("tr", {}, ...["leaf", "before", "after", "ratio"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, ...body),
  );
  return h("div", { class: "gs-diff-block gs-diff-table", hidden: rows.length === 0 }, table);
}
