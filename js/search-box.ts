// The big-graph view's search: an input ([data-gradsight="search"]) and a list of hits
// ([data-gradsight="search-results"]) whose entries carry data-node-id and data-node-name, so
// every node is reachable in the DOM (DESIGN §6) by name even when it sits in a collapsed group.
// Enter picks the first hit, arrow keys move between hits, Escape goes back to the input.

import { h, setText } from "./dom";
import { formatCount } from "./format";
import { type GraphIndex, nodeDisplayName } from "./graph-index";
import { ownsKeys, plainKey } from "./keys";
import { searchNodes } from "./search";

export interface SearchEvents {
  /** A hit was chosen: select node `i`, open its groups and centre it. */
  pick(i: number): void;
}

const LIMIT = 50;

export class SearchBox {
  readonly el: HTMLElement;
  readonly input: HTMLInputElement;
  readonly results: HTMLUListElement;
  private readonly status: HTMLElement;
  private ix: GraphIndex | null = null;
  private readonly listeners: [EventTarget, string, (e: Event) => void][];

  constructor(private readonly events: SearchEvents) {
    this.input = h("input", {
      type: "search",
      class: "gs-search-input",
      "data-gradsight": "search",
      placeholder: "Search ops, modules, parameters…",
      "aria-label": "Search nodes by op, module, parameter or variable name",
      autocomplete: "off",
      spellcheck: "false",
    });
    this.status = h("p", { class: "gs-search-status", "data-gradsight": "search-status", role: "status" });
    this.results = h("ul", {
      class: "gs-search-results",
      "data-gradsight": "search-results",
      "aria-label": "search results",
    });
    this.el = h("div", { class: "gs-search" }, this.input, this.status, this.results);
    this.listeners = [
      [this.input, "input", () => this.run()],
      [this.input, "keydown", (e) => this.onInputKey(e as KeyboardEvent)],
      [this.results, "click", (e) => this.onClick(e)],
      [this.results, "keydown", (e) => this.onResultKey(e as KeyboardEvent)],
    ];
    for (const [target, type, fn] of this.listeners) target.addEventListener(type, fn);
    this.run();
  }

  /** A new graph: run the current query against it. */
  setIndex(ix: GraphIndex | null): void {
    this.ix = ix;
    this.run();
  }

  destroy(): void {
    for (const [target, type, fn] of this.listeners) target.removeEventListener(type, fn);
  }

  private run(): void {
    const query = this.input.value.trim();
    this.results.replaceChildren();
    if (!this.ix || query === "") {
      setText(this.status, "");
      this.status.hidden = true;
      return;
    }
    const { nodes, total } = searchNodes(this.ix, query, LIMIT);
    const ix = this.ix;
    for (const i of nodes) {
      const where = ix.modules[i] ?? "";
      const detail = [where, ix.shapes[i]].filter((x) => x).join(" ");
      this.results.append(
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "gs-result",
              "data-node-id": ix.ids[i],
              "data-node-name": ix.names[i],
              title: ix.ids[i],
              ...ownsKeys("arrows escape"),
            },
            h("bdi", { class: "gs-result-name" }, nodeDisplayName(ix, i)),
            detail ? h("bdi", { class: "gs-result-detail" }, detail) : null,
          ),
        ),
      );
    }
    const text =
      total === 0
        ? "no node matches"
        : total > nodes.length
          ? `first ${formatCount(nodes.length)} of ${formatCount(total)} matches: add words to narrow`
          : `${formatCount(total)} match${total === 1 ? "" : "es"}`;
    setText(this.status, text);
    this.status.hidden = false;
  }

  private pickButton(button: Element | null | undefined): void {
    const id = button?.getAttribute("data-node-id");
    const i = id == null ? undefined : this.ix?.indexOf.get(id);
    if (i !== undefined) this.events.pick(i);
  }

  private onClick(e: Event): void {
    const button = e.target instanceof Element ? e.target.closest("button[data-node-id]") : null;
    if (button) this.pickButton(button);
  }

  private onInputKey(e: KeyboardEvent): void {
    const first = this.results.querySelector<HTMLButtonElement>("button[data-node-id]");
    if (e.key === "Enter" && first) {
      e.preventDefault();
      this.pickButton(first);
    } else if (e.key === "ArrowDown" && first) {
      e.preventDefault();
      first.focus();
    }
  }

  private onResultKey(e: KeyboardEvent): void {
    const buttons = [...this.results.querySelectorAll<HTMLButtonElement>("button[data-node-id]")];
    const at = buttons.indexOf(e.target as HTMLButtonElement);
    if (at < 0 || !plainKey(e)) return;
    let to: HTMLElement | undefined;
    if (e.key === "ArrowDown") to = buttons[at + 1];
    else if (e.key === "ArrowUp") to = at === 0 ? this.input : buttons[at - 1];
    else if (e.key === "Escape") to = this.input;
    if (!to) return;
    e.preventDefault();
    to.focus();
  }
}
