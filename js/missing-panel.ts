// The leaves that got no gradient in this run ([data-gradsight="missing"], from `graph.missing`):
// one item per leaf ([data-missing="<name>"]) with Python's short message. Leaves that are not in
// the graph (a frozen parameter) cannot be clicked there, so clicking an item asks Python `why`
// and shows the detailed answer in place (why-view.ts), with its link to the node where the path
// breaks. Hidden when every leaf got its gradient.

import { h, setText } from "./dom";
import { formatCount } from "./format";
import { whyView } from "./why-view";
import type { WireWhy } from "./wire";

export interface MissingEvents {
  /** Ask Python why leaf `name` got no gradient. */
  why(name: string): void;
  /** A "breaks at" link was clicked. */
  select(id: string): void;
}

export type WhyAnswer = { state: "loading" } | { state: "error"; error: string } | { state: "done"; why: WireWhy };

export class MissingPanel {
  readonly el: HTMLElement;
  private readonly title: HTMLElement;
  private readonly list: HTMLElement;
  private items = new Map<string, { item: HTMLElement; button: HTMLElement; detail: HTMLElement }>();
  private nodeName: (id: string) => string | null = () => null;
  private readonly onClick = (e: Event): void => this.click(e);

  constructor(private readonly events: MissingEvents) {
    this.title = h("h4", { class: "gs-missing-title" });
    this.list = h("ul", { class: "gs-missing-list" });
    this.el = h(
      "section",
      {
        class: "gs-banner gs-missing",
        "data-gradsight": "missing",
        "aria-label": "leaves without a gradient",
        hidden: true,
      },
      this.title,
      this.list,
    );
    this.el.addEventListener("click", this.onClick);
  }

  /** The leaves of `graph.missing`; answers shown before are dropped (they were about another run). */
  set(missing: readonly WireWhy[], nodeName: (id: string) => string | null): void {
    this.nodeName = nodeName;
    this.items = new Map();
    const items = missing.map((w) => {
      const button = h(
        "button",
        { type: "button", class: "gs-missing-item", "data-action": "why", "aria-expanded": "false" },
        h("code", {}, h("bdi", {}, w.name)),
        " ",
        h("bdi", { class: "gs-muted", "data-missing-message": "" }, w.message),
      );
      const detail = h("div", { class: "gs-why-detail", "data-why-detail": "", hidden: true });
      const item = h("li", { "data-missing": w.name, "data-why-reason": w.reason }, button, detail);
      this.items.set(w.name, { item, button, detail });
      return item;
    });
    this.list.replaceChildren(...items);
    const n = missing.length === 1 ? "1 leaf" : `${formatCount(missing.length)} leaves`;
    setText(this.title, `${n} got no gradient, a zero one or NaN/Inf: click one to see why`);
    this.el.hidden = missing.length === 0;
  }

  /** Show Python's answer (or the request's state) under the item of leaf `name`. */
  setAnswer(name: string, answer: WhyAnswer): void {
    const entry = this.items.get(name);
    if (!entry) return;
    const { item, button, detail } = entry;
    item.setAttribute("data-why-status", answer.state);
    button.setAttribute("aria-expanded", "true");
    detail.hidden = false;
    if (answer.state === "loading") detail.replaceChildren(h("p", { class: "gs-hint" }, "asking Python why…"));
    else if (answer.state === "error")
      detail.replaceChildren(h("p", { class: "gs-inspect-error", "data-why-error": "" }, answer.error));
    else detail.replaceChildren(whyView(answer.why, this.nodeName));
  }

  destroy(): void {
    this.el.removeEventListener("click", this.onClick);
  }

  private click(e: Event): void {
    if (!(e.target instanceof Element)) return;
    const link = e.target.closest("button[data-goto-node]");
    const id = link?.getAttribute("data-goto-node");
    if (id) {
      this.events.select(id);
      return;
    }
    if (e.target.closest("[data-why-detail]")) return;
    const name = e.target.closest("[data-missing]")?.getAttribute("data-missing");
    if (name != null) this.events.why(name);
  }
}
