// What a node box says and how big it is: up to three short lines (op or leaf name, module path,
// variable and first output shape), sized from an estimate of the text width so the layout never
// has to measure the DOM.

import { estimateTextWidth, formatShape, truncateEnd, truncateStart } from "./format";
import type { LayoutInput } from "./layout";
import type { OpaqueKind, WireGraph, WireNode, WireTensor, WireValue } from "./wire";

export type LineRole = "name" | "opaque" | "module" | "shape";

/** What an opaque node hides, in words (its label's second line and the inspector's badge). */
export const OPAQUE_TEXT: Record<OpaqueKind, string> = {
  compiled: "torch.compile region",
  checkpoint: "checkpoint (reentrant)",
  custom: "custom autograd.Function",
  "backward-hook": "module backward hook",
};

export const NOT_EXECUTED_TEXT =
  "not executed in the last backward (pruned: not on the path to what backward differentiated)";

export interface LabelLine {
  role: LineRole;
  text: string;
}

export interface NodeLabel {
  lines: LabelLine[];
  width: number;
  height: number;
}

const NAME_CHARS = 28;
const DETAIL_CHARS = 30;
export const NAME_FONT = 12;
export const DETAIL_FONT = 10.5;
export const LINE_HEIGHT = 15;
export const PAD_X = 10;
export const PAD_Y = 7;
const MIN_WIDTH = 64;

/** The name a person knows the node by: a leaf's tensor name, else the op name. */
export function displayName(node: WireNode): string {
  return node.leaf?.name ?? node.name;
}

/** First output shape; a leaf without recorded outputs uses its tensor's shape. */
export function displayShape(node: WireNode): string | null {
  const first = node.outputs[0];
  if (first) return formatShape(first.shape);
  return node.leaf ? formatShape(node.leaf.shape) : null;
}

export function nodeLabel(node: WireNode): NodeLabel {
  const lines: LabelLine[] = [{ role: "name", text: truncateEnd(displayName(node), NAME_CHARS) }];
  if (node.opaque_kind !== null) lines.push({ role: "opaque", text: OPAQUE_TEXT[node.opaque_kind] });
  // Leaves are named by their tensor; the module that owns a parameter is already in its name.
  if (node.module && !node.leaf) lines.push({ role: "module", text: truncateStart(node.module, DETAIL_CHARS) });
  const shape = displayShape(node);
  const detail = [node.variable, shape].filter((x): x is string => x !== null).join(" ");
  if (detail) lines.push({ role: "shape", text: truncateEnd(detail, DETAIL_CHARS) });
  let text = 0;
  for (const line of lines) {
    const mono = line.role !== "name";
    text = Math.max(text, estimateTextWidth(line.text, mono ? DETAIL_FONT : NAME_FONT, mono));
  }
  const height = lines.length * LINE_HEIGHT + 2 * PAD_Y;
  // Leaves are drawn as pills: their round ends need room beyond the text.
  const ends = node.kind === "leaf" ? height / 2 : 0;
  return { lines, width: Math.ceil(Math.max(MIN_WIDTH, text + 2 * PAD_X + ends)), height };
}

/** One-line description for screen readers and tooltips. */
export function describeNode(node: WireNode): string {
  const parts = [displayName(node), node.kind === "op" ? "operation" : node.kind];
  if (node.opaque_kind !== null) parts.push(OPAQUE_TEXT[node.opaque_kind]);
  if (node.leaf && node.leaf.name !== null) parts.push(node.name);
  if (node.module) parts.push(`module ${node.module}`);
  if (node.variable) parts.push(`variable ${node.variable}`);
  const shape = displayShape(node);
  if (shape) parts.push(`shape ${shape}`);
  return parts.join(", ");
}

/** The layout's view of a graph: ids, box sizes and the non-null `next` targets. */
export function layoutInput(graph: WireGraph, labels: ReadonlyMap<string, NodeLabel>): LayoutInput[] {
  return graph.nodes.map((node) => {
    const label = labels.get(node.id) ?? nodeLabel(node);
    const next: string[] = [];
    for (const [target] of node.next) if (target !== null) next.push(target);
    return { id: node.id, width: label.width, height: label.height, next };
  });
}

export interface NonFinite {
  /** Some tensor has NaN or Inf (counted, or seen through a non-finite norm). */
  present: boolean;
  /** How many were counted (0 when present but not counted). */
  count: number;
}

/** NaN or infinite values anywhere in what autograd saved or passed through this node. */
export function nonFinite(node: WireNode): NonFinite {
  const found: NonFinite = { present: false, count: 0 };
  const add = (t: WireTensor | null): void => {
    if (!t) return;
    const counted = (t.nan_count ?? 0) + (t.inf_count ?? 0);
    found.count += counted;
    found.present ||= t.nonfinite || counted > 0;
  };
  for (const g of node.grad_in) add(g);
  for (const g of node.grad_out) add(g);
  // Tuples of saved tensors nest a few levels at most; a stack keeps it iterative anyway.
  const values: WireValue[] = node.saved.map((s) => s.value);
  for (let v = values.pop(); v !== undefined; v = values.pop()) {
    if (v.type === "tensor") add(v);
    else if (v.type === "tuple") values.push(...v.items);
  }
  add(node.leaf?.grad ?? null);
  return found;
}

/** Everything that decides the layout and the drawn boxes, as one string to compare. */
export function structureKey(graph: WireGraph, labels: ReadonlyMap<string, NodeLabel>, direction: string): string {
  const parts: string[] = [direction];
  for (const n of graph.nodes) {
    const lines = labels.get(n.id)?.lines.map((l) => l.text) ?? [];
    const next = n.next.map(([t, nr]) => `${t ?? ""}:${nr}`);
    parts.push(`${n.id}\u0001${n.kind}\u0001${lines.join("\u0002")}\u0001${next.join(",")}`);
  }
  return parts.join("\u0000");
}

/** "3 NaN or infinite values", or without a number when they were seen but not counted. */
export function nonFiniteText(count: number): string {
  return count > 0 ? `${count} NaN or infinite values` : "NaN or infinite values";
}
