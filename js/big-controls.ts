// The big-graph view's own controls, above its outline: the flat view toggle
// ([data-action="flat"]), showing `AccumulateGrad` leaves as nodes of their own instead of folded
// beside their consumer ([data-action="leaves"]), collapsing every group
// ([data-action="collapse-all"]), and how many items of how many nodes are shown.

import { h, setText } from "./dom";
import { formatCount } from "./format";

export interface BigControlEvents {
  flat(): void;
  leaves(): void;
  collapseAll(): void;
}

export interface ControlState {
  flat: boolean;
  foldLeaves: boolean;
  /** Items laid out (nodes, groups, frames). */
  shown: number;
  total: number;
}

export class BigControls {
  readonly el: HTMLElement;
  private readonly flat: HTMLButtonElement;
  private readonly leaves: HTMLButtonElement;
  private readonly collapse: HTMLButtonElement;
  private readonly summary: HTMLElement;
  private readonly buttons: [HTMLButtonElement, () => void][];

  constructor(events: BigControlEvents) {
    const button = (action: string, text: string, title: string): HTMLButtonElement =>
      h("button", { type: "button", class: "gs-button", "data-action": action, title, "aria-pressed": "false" }, text);
    this.flat = button("flat", "Flat", "Show every node without module groups");
    this.leaves = button("leaves", "Leaves", "Show AccumulateGrad leaves as nodes instead of beside their consumer");
    this.collapse = button("collapse-all", "Collapse all", "Collapse every module group");
    this.collapse.removeAttribute("aria-pressed");
    this.summary = h("span", { class: "gs-big-summary", "data-gradsight": "shown" });
    this.el = h(
      "div",
      { class: "gs-big-bar", role: "toolbar", "aria-label": "big graph controls" },
      this.flat,
      this.leaves,
      this.collapse,
      this.summary,
    );
    this.buttons = [
      [this.flat, () => events.flat()],
      [this.leaves, () => events.leaves()],
      [this.collapse, () => events.collapseAll()],
    ];
    for (const [b, fn] of this.buttons) b.addEventListener("click", fn);
  }

  set(state: ControlState): void {
    this.flat.setAttribute("aria-pressed", String(state.flat));
    this.leaves.setAttribute("aria-pressed", String(!state.foldLeaves));
    this.collapse.disabled = state.flat;
    setText(this.summary, `${formatCount(state.shown)} shown of ${formatCount(state.total)} nodes`);
  }

  destroy(): void {
    for (const [b, fn] of this.buttons) b.removeEventListener("click", fn);
  }
}
