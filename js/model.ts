// Synced state: the anywidget model's traits (owned by Python, gradsight.Debugger) and the only
// two writes the view makes back (`selected`, `options`). UI-only state lives in state.ts.
// Values are read defensively: a trait Python has not set yet, or set to something odd, falls back
// to a default instead of throwing inside a change handler.

import type { AnyModel } from "@anywidget/types";
import { type Direction, isDirection } from "./layout";

export type Traits = {
  graph: unknown;
  selected: string;
  status: string;
  error: string;
  options: Record<string, unknown>;
};

export type Model = AnyModel<Traits>;

/** The selected node id, or null when nothing is selected ("" on the wire). */
export function readSelected(model: Model): string | null {
  const id = model.get("selected");
  return typeof id === "string" && id !== "" ? id : null;
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
