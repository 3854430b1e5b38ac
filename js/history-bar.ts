// The run history in the toolbar ([data-gradsight="history"], from the `history` trait): one select
// for the run shown (writes `current`; Python then swaps `graph` to it) and one for the run to
// compare with (writes `baseline`, -1: none; Python then computes `diff`). Each run reads
// "#index label · loss"; a run whose code raised is marked. Hidden until there are two runs.

import { h } from "./dom";
import { formatNumber, truncateEnd } from "./format";
import { ownsKeys } from "./keys";
import type { WireHistoryEntry } from "./wire";

export interface HistoryEvents {
  current(index: number): void;
  baseline(index: number): void;
}

const LABEL_CHARS = 48;

export class HistoryBar {
  readonly el: HTMLElement;
  private readonly current: HTMLSelectElement;
  private readonly baseline: HTMLSelectElement;
  private readonly onChange = (e: Event): void => {
    const index = Number((e.target as HTMLSelectElement).value);
    if (!Number.isInteger(index)) return;
    if (e.target === this.current) this.events.current(index);
    else if (e.target === this.baseline) this.events.baseline(index);
  };

  constructor(private readonly events: HistoryEvents) {
    const select = (action: string, label: string) =>
      h("select", { class: "gs-select", "data-action": action, "aria-label": label, ...ownsKeys("native arrows") });
    this.current = select("current", "Run shown");
    this.baseline = select("baseline", "Compare with run");
    this.el = h(
      "span",
      { class: "gs-history", "data-gradsight": "history", hidden: true },
      h("label", {}, "run ", this.current),
      h("label", {}, " compare with ", this.baseline),
    );
    this.el.addEventListener("change", this.onChange);
  }

  /** `shown`: the run index displayed (falls back to the newest); `baseline`: null for none. */
  set(history: readonly WireHistoryEntry[], shown: number | null, baseline: number | null): void {
    this.el.hidden = history.length < 2;
    const options = (withNone: boolean): HTMLOptionElement[] => [
      ...(withNone ? [h("option", { value: -1 }, "nothing")] : []),
      ...[...history].reverse().map((e) => {
        const loss = e.loss === null ? "" : ` · loss ${formatNumber(e.loss)}`;
        const failed = e.error === null ? "" : " · raised an error";
        const text = `#${e.index} ${truncateEnd(e.label, LABEL_CHARS)}${loss}${failed}`;
        return h("option", { value: e.index, title: e.error ?? e.label, "data-run-index": e.index }, text);
      }),
    ];
    this.current.replaceChildren(...options(false));
    this.baseline.replaceChildren(...options(true));
    const known = (i: number | null): boolean => i !== null && history.some((e) => e.index === i);
    const newest = history[history.length - 1]?.index;
    this.current.value = String(known(shown) ? shown : (newest ?? ""));
    this.baseline.value = String(known(baseline) ? baseline : -1);
  }

  /** Python is out of reach: the selects would write traits no one reads. */
  setDisabled(disabled: boolean): void {
    this.current.disabled = disabled;
    this.baseline.disabled = disabled;
  }

  destroy(): void {
    this.el.removeEventListener("change", this.onChange);
  }
}
