// What-if debugging in the view: owns the toggles panel, the run history selects, the diff view,
// the missing-gradient list and the elapsed clock, and their conversation with Python. Toggles are
// written to the synced `pending` trait (Python validates them and resets them after a re-run);
// `rerun` and `why` are requests over the request/reply client. A second re-run while one is in
// flight (or while `status` is "running") is refused in the view with a visible message and never
// sent. The view (view.ts) forwards trait changes here and asks for the state the inspector's
// checkboxes need, so the panel and the inspector always show the same pending toggles.

import { DiffView } from "./diff-view";
import { ElapsedClock } from "./elapsed";
import { HistoryBar } from "./history-bar";
import type { RequestClient } from "./inspect-client";
import { MissingPanel } from "./missing-panel";
import { type Model, readDiff, readHistory, readPending, readRunIndex, writePending, writeRunIndex } from "./model";
import { displayName } from "./node-label";
import { defaultToggles, type ToggleState, type ToggleTarget, withToggle } from "./toggles";
import { TogglesPanel } from "./toggles-panel";
import { parseWhy, type WireDiff, WireError, type WireGraph, type WireHistoryEntry } from "./wire";

export interface WhatIfHooks {
  select(id: string): void;
  /** Runs a callback from the message stream; errors go to the view's error banner. */
  guard(fn: () => void): void;
}

export const RUNNING_TEXT = "a re-run is already running";
export const FAILED_TEXT = "the re-run raised an error (traceback above); the graph shown is the previous run's";
/** A re-run is the user's whole step: it may take long; `status` shows that it is running. */
export const RERUN_TIMEOUT_MS = 15 * 60_000;

export class WhatIf {
  readonly panel: TogglesPanel;
  readonly diffView: DiffView;
  readonly history: HistoryBar;
  readonly missing: MissingPanel;
  readonly clock = new ElapsedClock();
  private graph: WireGraph | null = null;
  private pending = defaultToggles();
  private base = new Map<string, boolean>();
  private modules: ReadonlySet<string> = new Set();
  private variables: ReadonlySet<string> = new Set();
  private diff: WireDiff | null = null;
  private entries: WireHistoryEntry[] = [];
  private status = "ready";
  private inFlight = false;
  private refused: "running" | "python" | null = null;
  /** Python is out of reach (connection.ts): nothing can be re-run or toggled. */
  private lost = false;

  /** `client`: the view's request client, shared with the inspector (one message listener). */
  constructor(
    private readonly model: Model,
    private readonly client: RequestClient,
    private readonly hooks: WhatIfHooks,
  ) {
    this.panel = new TogglesPanel({
      toggle: (t, checked) => hooks.guard(() => this.toggle(t, checked)),
      rerun: () => hooks.guard(() => this.rerun()),
      clear: () => hooks.guard(() => writePending(model, defaultToggles())),
    });
    this.diffView = new DiffView({ close: () => writeRunIndex(model, "baseline", -1) });
    this.history = new HistoryBar({
      current: (i) => writeRunIndex(model, "current", i),
      baseline: (i) => writeRunIndex(model, "baseline", i),
    });
    this.missing = new MissingPanel({ why: (name) => hooks.guard(() => this.why(name)), select: hooks.select });
  }

  /** The checkboxes' state; null when this debugger cannot re-run (no toggles anywhere). */
  state(): ToggleState | null {
    const controls = this.graph?.controls;
    if (!controls?.rerun || this.lost) return null;
    return {
      pending: this.pending,
      base: this.base,
      modules: this.modules,
      variables: this.variables,
      detachNodes: controls.detach_nodes,
      shown: this.graph?.run.toggles ?? null,
    };
  }

  /** Python is out of reach, or back: the panel's and the history's controls follow. */
  setLost(lost: boolean): void {
    this.lost = lost;
    this.panel.setLost(lost);
    this.history.setDisabled(lost);
    if (!lost && this.refused === "python") this.setRefused(null, null);
    this.sync();
  }

  /** A new graph: its controls, its missing leaves, the run it is. */
  setGraph(graph: WireGraph | null): void {
    if (graph && this.graph && graph.run.index !== this.graph.run.index) this.setRefused(null, null); // another run
    this.graph = graph;
    const controls = graph?.controls ?? null;
    this.base = new Map((controls?.leaves ?? []).map((l) => [l.name, l.requires_grad]));
    this.modules = new Set(controls?.modules ?? []);
    this.variables = new Set(controls?.variables ?? []);
    // A cell variable holding a leaf can be toggled by name too.
    for (const n of graph?.nodes ?? []) {
      const name = n.leaf?.name;
      if (n.leaf && name && this.variables.has(name) && !this.base.has(name)) this.base.set(name, n.leaf.requires_grad);
    }
    // Leaves in the graph carry their dtype; controls carry it for tensors the graph does not draw
    // (an integer input no op differentiates): neither gets a requires_grad box torch would refuse.
    const dtypes = new Map<string, string>();
    for (const l of controls?.leaves ?? []) if (l.dtype !== null) dtypes.set(l.name, l.dtype);
    for (const n of graph?.nodes ?? []) if (n.leaf?.name) dtypes.set(n.leaf.name, n.leaf.dtype);
    this.panel.setControls(controls, this.base, dtypes);
    this.client.cancelAll("why:");
    const byId = new Map((graph?.nodes ?? []).map((n) => [n.id, n]));
    this.missing.set(graph?.missing ?? [], (id) => {
      const n = byId.get(id);
      return n ? displayName(n) : null;
    });
    this.sync();
    this.onRunIndex();
  }

  // Each reader throws on a malformed trait (shown in the error banner by the view's guard): the
  // view then shows the default, never the previous value as if it were current.

  onPending(): void {
    this.pending = defaultToggles();
    try {
      this.pending = readPending(this.model);
    } finally {
      this.sync();
    }
  }

  onHistory(): void {
    this.entries = [];
    try {
      this.entries = readHistory(this.model);
    } finally {
      this.onRunIndex();
      this.diffView.set(this.diff, this.entries);
    }
  }

  onRunIndex(): void {
    const shown = readRunIndex(this.model, "current") ?? this.graph?.run.index ?? null;
    this.history.set(this.entries, shown, readRunIndex(this.model, "baseline"));
  }

  onDiff(): void {
    this.diff = null;
    try {
      this.diff = readDiff(this.model);
    } finally {
      this.diffView.set(this.diff, this.entries);
    }
  }

  onStatus(status: string): void {
    this.status = status;
    this.clock.set(status === "running");
    this.panel.setBusy(this.busy());
    if (status !== "running" && this.refused === "running") this.setRefused(null, null);
  }

  /** Node ids the shown run added compared with the baseline (marked on the graph). */
  added(): ReadonlySet<string> {
    const d = this.diff;
    return d && this.graph && this.graph.run.index === d.after ? new Set(d.added) : new Set();
  }

  /** The user set a toggle (in the panel or the inspector): write the new pending toggles. */
  toggle(t: ToggleTarget, checked: boolean): void {
    const state = this.state();
    if (!state) return;
    writePending(this.model, withToggle(state, t, checked));
    // A real model fires change:pending on set(); this covers one that does not (idempotent).
    this.pending = readPending(this.model);
    this.sync();
  }

  destroy(): void {
    this.client.cancelAll("rerun");
    this.client.cancelAll("why:");
    this.clock.destroy();
    this.panel.destroy();
    this.diffView.destroy();
    this.history.destroy();
    this.missing.destroy();
  }

  private busy(): boolean {
    return this.inFlight || this.status === "running";
  }

  private sync(): void {
    const state = this.state();
    if (state) this.panel.sync(state);
    this.panel.setBusy(this.busy());
  }

  private setRefused(text: string | null, kind: "running" | "python" | null): void {
    this.refused = text === null ? null : kind;
    this.panel.setRefused(text, kind ?? undefined);
  }

  private rerun(): void {
    const graph = this.graph;
    if (!graph?.controls.rerun) return;
    if (this.busy()) {
      this.setRefused(RUNNING_TEXT, "running");
      return;
    }
    this.setRefused(null, null);
    this.inFlight = true;
    this.panel.setBusy(true);
    const done = (): void => {
      this.inFlight = false;
      this.panel.setBusy(this.busy());
    };
    this.client.request(
      "rerun",
      "rerun",
      { after_run: graph.run.index },
      {
        ok: (msg) => {
          done();
          if (typeof msg.run !== "number") throw new WireError("the rerun reply has no run index");
        },
        fail: (error) =>
          this.hooks.guard(() => {
            done();
            // "error" while Python is out of reach is the view's own status, not a failed re-run
            this.setRefused(this.status === "error" && !this.lost ? FAILED_TEXT : error, "python");
          }),
      },
      { timeoutMs: RERUN_TIMEOUT_MS, retry: "click Re-run again once the kernel is idle" },
    );
  }

  private why(name: string): void {
    this.missing.setAnswer(name, { state: "loading" });
    this.client.request(
      `why:${name}`,
      "why",
      { leaf: name },
      {
        ok: (msg) => this.missing.setAnswer(name, { state: "done", why: parseWhy(msg.why, "why") }),
        fail: (error) => this.hooks.guard(() => this.missing.setAnswer(name, { state: "error", error })),
      },
      { retry: "click the leaf again to retry" },
    );
  }
}
