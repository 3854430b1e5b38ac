// Synced state: the anywidget model's traits (owned by Python, gradsight.Debugger) and the writes
// the view makes back (`selected`, `options`, and for what-if debugging `pending`, `current`,
// `baseline`). UI-only state lives in state.ts.
// Values are read defensively: a trait Python has not set yet (an older gradsight) falls back to a
// default. The what-if traits are validated by wire.ts: a malformed value throws a WireError, which
// the view's guard shows in the error banner.

import type { AnyModel } from "@anywidget/types";
import { type Direction, isDirection } from "./layout";
import { defaultToggles } from "./toggles";
import { parseDiff, parseHistory, parseToggles, type WireDiff, type WireHistoryEntry, type WireToggles } from "./wire";

export type Traits = {
  graph: unknown;
  selected: string;
  status: string;
  error: string;
  options: Record<string, unknown>;
  /** toggles set in the view, not applied yet (WireToggles); Python resets it after a re-run */
  pending: unknown;
  /** the debugger's last runs, oldest first (WireHistoryEntry[]) */
  history: unknown;
  /** index of the run shown */
  current: number;
  /** index of the run compared against, -1: none */
  baseline: number;
  /** WireDiff | null */
  diff: unknown;
};

export type Model = AnyModel<Traits>;

/** The selected node id, or null when nothing is selected ("" on the wire). */
export function readSelected(model: Model): string | null {
  const id = model.get("selected");
  return typeof id === "string" && id !== "" ? id : null;
}

/** The raw `graph` trait (parsed by wire.ts), or null before Python's first graph (unset, or an empty dict). */
export function readGraphTrait(model: Model): unknown {
  const raw: unknown = model.get("graph");
  return raw === undefined || raw === null || (typeof raw === "object" && Object.keys(raw).length === 0) ? null : raw;
}

export function readStatus(model: Model): string {
  const status = model.get("status");
  return typeof status === "string" && status !== "" ? status : "ready";
}

export function readError(model: Model): string {
  const error = model.get("error");
  return typeof error === "string" ? error : "";
}

export function readOptions(model: Model): Record<string, unknown> {
  const options = model.get("options");
  return typeof options === "object" && options !== null && !Array.isArray(options) ? options : {};
}

export function readDirection(model: Model): Direction {
  const direction = readOptions(model).direction;
  return isDirection(direction) ? direction : "TB";
}

/** Select a node as a click does; Python observers of `selected` fire on save_changes(). */
export function writeSelected(model: Model, id: string): void {
  model.set("selected", id);
  model.save_changes();
}

/** Change the layout direction. A new dict: mutating the old one in place would not sync. */
export function writeDirection(model: Model, direction: Direction): void {
  model.set("options", { ...readOptions(model), direction });
  model.save_changes();
}

/** The pending toggles; the defaults while Python has set none. Throws WireError when malformed. */
export function readPending(model: Model): WireToggles {
  const raw = model.get("pending");
  return raw === undefined || raw === null ? defaultToggles() : parseToggles(raw, "pending");
}

/** Replace the pending toggles (a new dict: Python validates it and reverts a bad one). */
export function writePending(model: Model, pending: WireToggles): void {
  model.set("pending", pending);
  model.save_changes();
}

/** The run history (empty while Python has set none). Throws WireError when malformed. */
export function readHistory(model: Model): WireHistoryEntry[] {
  const raw = model.get("history");
  return raw === undefined || raw === null ? [] : parseHistory(raw);
}

export function readDiff(model: Model): WireDiff | null {
  return parseDiff(model.get("diff"));
}

/** `current` or `baseline` as a run index; null when unset or not an integer (baseline -1: none). */
export function readRunIndex(model: Model, key: "current" | "baseline"): number | null {
  const v = model.get(key);
  return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : null;
}

/** Show run `index` (`current`) or compare with it (`baseline`, -1: compare with nothing). */
export function writeRunIndex(model: Model, key: "current" | "baseline", index: number): void {
  model.set(key, index);
  model.save_changes();
}
