// The run banner ([data-gradsight="run"]) under the toolbar: what the graph is the run of, from the
// graph's `run` object — the mode (and step, live), the loss, where backward started (the root
// gradient, in words), the what-if toggles the run applied, memory kept against the budget and what
// went past it, and errors gradsight's own hooks met. Parts that do not apply are hidden; a plain tensor graph shows no banner at all.

import { h, setText } from "./dom";
import { formatBytes, formatNumber, plural } from "./format";
import { changeCount, describeToggles } from "./toggles";
import type { RootGradient, RunMode, WireRun } from "./wire";

const MODE_TEXT: Record<RunMode, string> = {
  tensor: "graph of a tensor",
  cell: "%%gradsight cell",
  runnable: "runnable debugger",
  live: "live",
};

export const ROOT_GRADIENT_TEXT: Record<RootGradient, string> = {
  scalar: "backward from the scalar loss",
  ones: "no loss given: backward from torch.ones_like(output), a vector–Jacobian product with v = 1",
  grad_output: "backward from your grad_output (vector–Jacobian product)",
};

export const HOOK_ERRORS_TEXT = "gradsight's hooks hit errors (your backward was not affected): ";

type Part = "mode" | "step" | "loss" | "root-gradient" | "toggles" | "memory" | "errors";
const PARTS: readonly Part[] = ["mode", "step", "loss", "root-gradient", "toggles", "memory", "errors"];

export class RunBanner {
  readonly el: HTMLElement;
  private readonly parts: Record<Part, HTMLElement>;

  constructor() {
    // the toggles part names leaves and modules: isolated (<bdi>) from the parts around it
    const part = (name: Part, cls = "gs-run-part"): HTMLElement =>
      h(name === "toggles" ? "bdi" : "span", { class: cls, "data-run": name });
    this.parts = {
      mode: part("mode", "gs-run-part gs-run-mode"),
      step: part("step"),
      loss: part("loss"),
      "root-gradient": part("root-gradient"),
      toggles: part("toggles", "gs-run-part gs-run-toggles"),
      memory: part("memory"),
      errors: h("div", { class: "gs-run-errors", "data-run": "errors", role: "alert" }),
    };
    this.el = h(
      "div",
      { class: "gs-banner gs-run", "data-gradsight": "run", hidden: true },
      ...PARTS.map((p) => this.parts[p]),
    );
  }

  /** Show `run` (null: no graph). */
  set(run: WireRun | null): void {
    const text: Record<Part, string> = {
      mode: "",
      step: "",
      loss: "",
      "root-gradient": "",
      toggles: "",
      memory: "",
      errors: "",
    };
    if (run) {
      text.mode = MODE_TEXT[run.mode];
      if (run.mode === "live") text.step = `step ${run.step}`;
      if (run.loss !== null) text.loss = `loss ${formatNumber(run.loss)}`;
      if (run.root_gradient !== null) text["root-gradient"] = ROOT_GRADIENT_TEXT[run.root_gradient];
      if (run.toggles !== null && changeCount(run.toggles) > 0)
        text.toggles = `what if: ${describeToggles(run.toggles)}`;
      text.memory = memoryText(run);
      if (run.errors.length > 0) text.errors = HOOK_ERRORS_TEXT + run.errors.join("; ");
    }
    for (const p of PARTS) {
      setText(this.parts[p], text[p]);
      this.parts[p].hidden = text[p] === "";
    }
    this.parts.memory.classList.toggle("gs-run-dropped", (run?.dropped ?? 0) > 0);
    const extra = PARTS.some((p) => p !== "mode" && text[p] !== "");
    this.el.hidden = run === null || (run.mode === "tensor" && !extra);
    if (run) this.el.setAttribute("data-run-mode", run.mode);
    else this.el.removeAttribute("data-run-mode");
  }
}

/** "kept 1.5 MiB of 256 MiB budget · 3 tensors past the memory budget: statistics only" */
function memoryText(run: WireRun): string {
  const parts: string[] = [];
  if (run.budget_bytes > 0)
    parts.push(`kept ${formatBytes(run.kept_bytes)} of ${formatBytes(run.budget_bytes)} budget`);
  else if (run.kept_bytes > 0) parts.push(`kept ${formatBytes(run.kept_bytes)}`);
  if (run.dropped > 0) parts.push(`${plural(run.dropped, "tensor")} past the memory budget: statistics only`);
  return parts.join(" · ");
}
