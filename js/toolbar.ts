// The controls above the graph and the banners under them: fit / zoom buttons, the direction
// select (writes `options`), room for the run history selects, the status text (exactly the
// `status` trait: [data-gradsight="status"] is part of DESIGN §6) with the elapsed time of a run
// beside it, the node count, and the error (a re-run's traceback: monospace, scrollable), message
// and notes banners. All text goes in as text.

import { h, setText } from "./dom";
import { formatCount } from "./format";
import { ownsKeys } from "./keys";
import { DIRECTIONS, type Direction, isDirection } from "./layout";

export interface ToolbarEvents {
  fit(): void;
  zoom(factor: number): void;
  direction(direction: Direction): void;
}

const DIRECTION_NAMES: Record<Direction, string> = {
  TB: "root at top",
  BT: "root at bottom",
  LR: "root at left",
  RL: "root at right",
};

export const ZOOM_STEP = 1.25;

/** Parts other modules own, placed in the toolbar: the history selects and the elapsed clock. */
export interface ToolbarParts {
  history?: HTMLElement;
  elapsed?: HTMLElement;
}

export class Toolbar {
  readonly el: HTMLElement;
  private readonly status: HTMLElement;
  private readonly count: HTMLElement;
  private readonly select: HTMLSelectElement;
  private readonly buttons: [HTMLButtonElement, () => void][];
  private readonly onChange = (): void => {
    if (isDirection(this.select.value)) this.events.direction(this.select.value);
  };

  constructor(
    private readonly events: ToolbarEvents,
    parts: ToolbarParts = {},
  ) {
    this.buttons = [
      button("fit", "Fit", "Fit the whole graph in view", () => events.fit()),
      button("zoom-in", "+", "Zoom in", () => events.zoom(ZOOM_STEP)),
      button("zoom-out", "−", "Zoom out", () => events.zoom(1 / ZOOM_STEP)),
    ];
    this.select = h("select", {
      class: "gs-select",
      "data-action": "direction",
      "aria-label": "Layout direction",
      ...ownsKeys("native arrows"),
    });
    for (const d of DIRECTIONS) this.select.append(h("option", { value: d }, `${d} · ${DIRECTION_NAMES[d]}`));
    this.select.addEventListener("change", this.onChange);
    this.status = h("span", { class: "gs-status", "data-gradsight": "status", role: "status" }, "ready");
    this.count = h("span", { class: "gs-count", "data-gradsight": "count" }, "");
    this.el = h(
      "div",
      { class: "gs-toolbar", "data-gradsight": "toolbar", role: "toolbar", "aria-label": "graph controls" },
      h("span", { class: "gs-brand" }, "gradsight"),
      ...this.buttons.map(([b]) => b),
      this.select,
      parts.history,
      h("span", { class: "gs-spacer" }),
      this.count,
      this.status,
      parts.elapsed,
    );
  }

  /** Status text is exactly the trait value (`ready` / `running` / `error`): tests read it. */
  setStatus(status: string): void {
    setText(this.status, status);
    this.status.setAttribute("data-status", status);
  }

  setCount(nodes: number | null): void {
    setText(this.count, nodes === null ? "" : `${formatCount(nodes)} node${nodes === 1 ? "" : "s"}`);
  }

  setDirection(direction: Direction): void {
    this.select.value = direction;
  }

  destroy(): void {
    this.select.removeEventListener("change", this.onChange);
    for (const [b, onClick] of this.buttons) b.removeEventListener("click", onClick);
  }
}

function button(action: string, text: string, title: string, onClick: () => void): [HTMLButtonElement, () => void] {
  const b = h(
    "button",
    { type: "button", class: "gs-button", "data-action": action, title, "aria-label": title },
    text,
  );
  b.addEventListener("click", onClick);
  return [b, onClick];
}

/** Error, empty-graph message and notes, shown between the toolbar and the graph. */
export class Banners {
  readonly error: HTMLElement;
  readonly message: HTMLElement;
  readonly notes: HTMLElement;

  constructor() {
    this.error = h("div", { class: "gs-banner gs-error", "data-gradsight": "error", role: "alert", hidden: true });
    this.message = h("div", { class: "gs-banner gs-message", "data-gradsight": "message", hidden: true });
    this.notes = h("ul", { class: "gs-notes", "data-gradsight": "notes", hidden: true });
  }

  /** `python`: the `error` trait; `graph`: why the graph could not be shown. Either may be empty. */
  setErrors(python: string, graph: string): void {
    this.error.replaceChildren();
    if (python) this.error.append(h("pre", { class: "gs-error-text", "data-error": "python" }, python));
    if (graph) this.error.append(h("div", { class: "gs-error-text", "data-error": "graph" }, graph));
    this.error.hidden = python === "" && graph === "";
  }

  setMessage(message: string | null): void {
    setText(this.message, message ?? "");
    this.message.hidden = message === null || message === "";
  }

  setNotes(notes: readonly string[]): void {
    this.notes.replaceChildren(...notes.map((n) => h("li", {}, n)));
    this.notes.hidden = notes.length === 0;
  }
}
