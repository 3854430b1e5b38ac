// The what-if panel ([data-gradsight="toggles"]) between the banners and the graph: the re-run
// button ([data-action="rerun"], DESIGN §6) with the number of pending changes, a clear button, the
// refusal line, then (collapsible) the whole-step toggles, a filter box, the tensors (leaves and
// cell variables: requires_grad, detach) and the module tree (freeze, no_grad, inference_mode,
// detach). Only the whole-step and leaf toggles carry `data-toggle` (DESIGN §6: one element per
// selector); module, variable and edge toggles carry `data-scope-toggle` (toggle-inputs.ts). Rows are rebuilt only when `graph.controls` changes; a change of `pending`
// only re-syncs them (toggle-inputs.ts), so focus and the filter survive. When the debugger cannot
// re-run, the panel shows `controls.note` instead (or nothing when there is no note).

import { h, setText } from "./dom";
import { plural } from "./format";
import { isToggleInput, labelledBox, syncToggleInputs, toggleBox } from "./toggle-inputs";
import {
  canRequireGrad,
  changeCount,
  describeToggles,
  NO_GRAD_DTYPE,
  readTarget,
  type ToggleState,
  type ToggleTarget,
} from "./toggles";
import type { WireControls } from "./wire";

export interface TogglesEvents {
  toggle(target: ToggleTarget, checked: boolean): void;
  rerun(): void;
  clear(): void;
}

const MODULE_COLUMNS: readonly [ToggleTarget["kind"], string, (m: string) => string][] = [
  ["freeze", "freeze", (m) => `freeze ${m} (requires_grad=False for its parameters)`],
  ["no-grad", "no_grad", (m) => `run ${m} under torch.no_grad()`],
  ["inference-mode", "inference", (m) => `run ${m} under torch.inference_mode()`],
  ["detach", "detach", (m) => `detach the output of ${m}`],
];

export class TogglesPanel {
  readonly el: HTMLElement;
  private readonly expand: HTMLButtonElement;
  private readonly summary: HTMLElement;
  private readonly rerunButton: HTMLButtonElement;
  private readonly clearButton: HTMLButtonElement;
  private readonly refused: HTMLElement;
  private readonly note: HTMLElement;
  private readonly body: HTMLElement;
  private readonly filter: HTMLInputElement;
  private readonly lists: HTMLElement;
  private controlsKey = "";
  private lost = false;
  private readonly listeners: [string, (e: Event) => void][] = [
    ["click", (e) => this.onClick(e)],
    ["change", (e) => this.onChange(e)],
    ["input", (e) => this.onInput(e)],
  ];

  constructor(private readonly events: TogglesEvents) {
    this.expand = h(
      "button",
      { type: "button", class: "gs-toggles-title", "data-action": "toggle-panel", "aria-expanded": "true" },
      "What if…",
    );
    this.summary = h("bdi", { class: "gs-pending-summary", "data-gradsight": "pending" }); // names leaves
    this.rerunButton = h("button", { type: "button", class: "gs-button gs-primary", "data-action": "rerun" }, "Re-run");
    this.clearButton = h(
      "button",
      { type: "button", class: "gs-button", "data-action": "clear-toggles", title: "Forget every pending toggle" },
      "Clear",
    );
    this.refused = h("span", { class: "gs-refused", "data-gradsight": "refused", role: "alert", hidden: true });
    this.note = h("p", { class: "gs-toggles-note", "data-toggles-note": "", hidden: true });
    this.filter = h("input", {
      type: "search",
      class: "gs-filter",
      "data-action": "filter-toggles",
      placeholder: "filter tensors and modules",
      "aria-label": "Filter tensors and modules",
    });
    this.lists = h("div", { class: "gs-toggle-lists" });
    this.body = h(
      "div",
      { class: "gs-toggles-body", "data-toggles-body": "" },
      this.stepGroup(),
      this.filter,
      this.lists,
    );
    this.el = h(
      "section",
      { class: "gs-banner gs-toggles", "data-gradsight": "toggles", "aria-label": "what-if toggles", hidden: true },
      h(
        "div",
        { class: "gs-toggles-head" },
        this.expand,
        this.summary,
        this.rerunButton,
        this.clearButton,
        this.refused,
      ),
      this.note,
      this.body,
    );
    for (const [type, fn] of this.listeners) this.el.addEventListener(type, fn);
  }

  /** Show what `controls` lets the user toggle (null: no graph). `base`: leaves' requires_grad now;
   * `dtypes`: the dtypes of the leaves in the graph (an integer leaf gets no requires_grad box). */
  setControls(
    controls: WireControls | null,
    base: ReadonlyMap<string, boolean>,
    dtypes: ReadonlyMap<string, string> = new Map(),
  ): void {
    const key = JSON.stringify([controls, [...base], [...dtypes]]);
    if (key === this.controlsKey) return;
    this.controlsKey = key;
    const rerun = controls?.rerun === true;
    this.el.hidden = controls === null || (!rerun && !controls.note);
    setText(this.note, controls?.note ?? "");
    this.note.hidden = !controls?.note;
    // No re-run possible: no button, no toggles in the document (nothing dead to find or click).
    for (const part of [this.summary, this.clearButton, this.expand]) part.hidden = !rerun;
    if (!rerun) {
      this.rerunButton.remove();
      this.body.remove();
      this.lists.replaceChildren();
      return;
    }
    if (!this.rerunButton.isConnected) this.summary.after(this.rerunButton);
    if (!this.body.isConnected) this.note.after(this.body);
    this.body.hidden = this.expand.getAttribute("aria-expanded") !== "true";
    this.lists.replaceChildren(tensorTable(controls, base, dtypes), moduleTable(controls.modules));
    this.applyFilter();
  }

  /** Reflect the pending toggles: checkboxes, pending marks, the button's count. */
  sync(state: ToggleState): void {
    syncToggleInputs(this.el, state);
    const n = changeCount(state.pending, state.shown ?? null); // from the run shown: 0 right after a re-run
    setText(this.rerunButton, n === 0 ? "Re-run" : `Re-run with ${plural(n, "change")}`);
    this.rerunButton.classList.toggle("gs-pending", n > 0);
    setText(this.summary, n === 0 ? "" : describeToggles(state.pending));
    this.summary.title = this.summary.textContent ?? "";
    this.clearButton.disabled = changeCount(state.pending) === 0 && !state.pending.apply;
    if (this.lost) this.disableAll();
  }

  /** Python is out of reach (connection.ts): re-run, clear and every toggle disabled until it is back. */
  setLost(lost: boolean): void {
    this.lost = lost;
    this.el.toggleAttribute("data-lost", lost);
    this.rerunButton.disabled = lost;
    if (lost) this.disableAll(); // back: the next sync() enables them again
  }

  /** While a re-run runs the button is marked disabled; it stays clickable to say why nothing happens. */
  setBusy(busy: boolean): void {
    this.rerunButton.setAttribute("aria-disabled", busy ? "true" : "false");
    this.rerunButton.classList.toggle("gs-busy", busy);
  }

  /** The refusal or failure line next to the button (null: hide it). */
  setRefused(text: string | null, kind = "running"): void {
    setText(this.refused, text ?? "");
    this.refused.hidden = text === null;
    if (text === null) this.refused.removeAttribute("data-refused");
    else this.refused.setAttribute("data-refused", kind);
  }

  destroy(): void {
    for (const [type, fn] of this.listeners) this.el.removeEventListener(type, fn);
  }

  private disableAll(): void {
    this.clearButton.disabled = true;
    for (const input of this.body.querySelectorAll<HTMLInputElement>("input[type=checkbox]")) input.disabled = true;
  }

  private stepGroup(): HTMLElement {
    return h(
      "fieldset",
      { class: "gs-toggle-group", "data-toggles-group": "step" },
      h("legend", {}, "whole step"),
      labelledBox({ kind: "no-grad", attr: null, name: null }, "under torch.no_grad()"),
      labelledBox({ kind: "inference-mode", attr: null, name: null }, "under torch.inference_mode()"),
      labelledBox({ kind: "apply", attr: null, name: null }, "keep requires_grad changes on my tensors after the run"),
    );
  }

  private onClick(e: Event): void {
    const button = e.target instanceof Element ? e.target.closest("button[data-action]") : null;
    const action = button?.getAttribute("data-action");
    if (action === "rerun") this.events.rerun();
    else if (action === "clear-toggles") this.events.clear();
    else if (action === "toggle-panel") {
      const open = this.expand.getAttribute("aria-expanded") !== "true";
      this.expand.setAttribute("aria-expanded", String(open));
      this.body.hidden = !open;
    }
  }

  private onChange(e: Event): void {
    const input = e.target;
    if (!isToggleInput(input)) return;
    const t = readTarget(input);
    if (t) this.events.toggle(t, input.checked);
  }

  private onInput(e: Event): void {
    if (e.target === this.filter) this.applyFilter();
  }

  private applyFilter(): void {
    const want = this.filter.value.trim().toLowerCase();
    for (const row of this.lists.querySelectorAll<HTMLElement>("[data-filter-text]")) {
      row.hidden = want !== "" && !(row.getAttribute("data-filter-text") ?? "").includes(want);
    }
  }
}

/** Leaves and cell variables, one row each: requires_grad (leaves), detach (variables). */
function tensorTable(
  controls: WireControls,
  base: ReadonlyMap<string, boolean>,
  dtypes: ReadonlyMap<string, string>,
): HTMLElement {
  const inGraph = new Map(controls.leaves.map((l) => [l.name, l.in_graph]));
  const names = [...new Set([...controls.leaves.map((l) => l.name), ...controls.variables])];
  const variables = new Set(controls.variables);
  if (names.length === 0) return h("div", { hidden: true });
  const rows = names.map((name) => {
    const missing = inGraph.get(name) === false;
    const leaf = base.has(name);
    return h(
      "tr",
      { "data-toggle-row": "", "data-filter-text": name.toLowerCase(), class: missing ? "gs-not-in-graph" : null },
      h(
        "th",
        { scope: "row" },
        h("code", {}, h("bdi", {}, name)),
        missing ? h("span", { class: "gs-tag" }, "not in graph") : null,
      ),
      h("td", {}, leaf ? requiresGradBox(name, dtypes.get(name)) : null),
      h("td", {}, variables.has(name) ? toggleBox({ kind: "detach", attr: "variable", name }, `detach ${name}`) : null),
    );
  });
  return table("tensors", ["tensor", "requires_grad", "detach"], rows);
}

/** A leaf's requires_grad box; for an integer or bool leaf, which torch refuses, its dtype instead. */
function requiresGradBox(name: string, dtype: string | undefined): HTMLElement {
  if (dtype === undefined || canRequireGrad(dtype))
    return toggleBox({ kind: "requires-grad", attr: "leaf", name }, `requires_grad of ${name}`);
  return h("span", { class: "gs-no-toggle", "data-no-toggle": dtype, title: `${name}: ${NO_GRAD_DTYPE}` }, dtype);
}

/** The modules as a tree: indented under their nearest listed ancestor, named relative to it. */
function moduleTable(modules: readonly string[]): HTMLElement {
  if (modules.length === 0) return h("div", { hidden: true });
  const listed = new Set(modules);
  const rows = modules.map((m) => {
    let depth = 0;
    let parent: string | null = null;
    for (let p = m; p !== ""; ) {
      const cut = p.lastIndexOf(".");
      p = cut < 0 ? "" : p.slice(0, cut);
      if (listed.has(p)) {
        depth++;
        parent ??= p;
      }
    }
    const label = m === "" ? "(whole model)" : parent ? m.slice(parent.length + 1) : m;
    const shown = m === "" ? "the whole model" : m;
    return h(
      "tr",
      { "data-toggle-row": "", "data-filter-text": m.toLowerCase() },
      h("th", { scope: "row", title: m, style: `--gs-depth: ${depth}` }, h("code", {}, h("bdi", {}, label))),
      ...MODULE_COLUMNS.map(([kind, , title]) =>
        h("td", {}, toggleBox({ kind, attr: "module", name: m }, title(shown))),
      ),
    );
  });
  return table("modules", ["module", ...MODULE_COLUMNS.map(([, head]) => head)], rows);
}

function table(group: string, heads: readonly string[], rows: readonly HTMLElement[]): HTMLElement {
  return h(
    "div",
    { class: "gs-toggle-table", "data-toggles-group": group },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...heads.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, ...rows),
    ),
  );
}
