// What the canvas writes in a node box, a collapsed group box, a frame header and a folded leaf
// pill, and how big each is: sizes come from the same text-width estimate as the SVG view
// (node-label.ts), so layout never measures the DOM and works in a Worker. Sizes depend only on
// structure (names, counts), never on gradient values, so a live update keeps the layout.

import { estimateTextWidth, formatCount, formatNumber, truncateEnd, truncateStart } from "./format";
import { type GraphIndex, KIND_LEAF, nodeDisplayName, opaqueKind } from "./graph-index";
import type { Group } from "./groups";
import { DETAIL_FONT, type LabelLine, LINE_HEIGHT, NAME_FONT, OPAQUE_TEXT, PAD_X, PAD_Y } from "./node-label";

export interface Size {
  width: number;
  height: number;
}

export const LEAF_FONT = 10;
export const LEAF_HEIGHT = 16;
export const LEAF_GAP = 3;
/** Room between a node box and its column of folded leaves. */
export const LEAF_INDENT = 6;
export const FRAME_PAD = 10;
export const FRAME_HEADER = 22;
const GROUP_MIN_WIDTH = 150;
const MIN_WIDTH = 64;
const NAME_CHARS = 28;
const DETAIL_CHARS = 30;
const LEAF_CHARS = 24;

/**
 * The name on a node box or leaf pill. Inside module frames a parameter drops the module path its
 * frame already shows (`encoder.layers.3.mlp.fc1.weight` → `fc1.weight`); the flat view keeps it.
 */
export function shownName(ix: GraphIndex, i: number, module: boolean): string {
  const name = nodeDisplayName(ix, i);
  const mod = ix.modules[i];
  if (module || ix.kind[i] !== KIND_LEAF || !mod || !name.startsWith(`${mod}.`)) return name;
  return name.slice(mod.length + 1);
}

/** Label lines of node i; `module`: include the module path (the flat view has no frames to say it). */
export function nodeLines(ix: GraphIndex, i: number, module: boolean): LabelLine[] {
  const lines: LabelLine[] = [{ role: "name", text: truncateEnd(shownName(ix, i, module), NAME_CHARS) }];
  const opaque = opaqueKind(ix, i);
  if (opaque !== null) lines.push({ role: "opaque", text: OPAQUE_TEXT[opaque] });
  const mod = ix.modules[i];
  if (module && mod && ix.kind[i] !== KIND_LEAF) lines.push({ role: "module", text: truncateStart(mod, DETAIL_CHARS) });
  const detail = [ix.variables[i], ix.shapes[i]].filter((x) => x != null).join(" ");
  if (detail) lines.push({ role: "shape", text: truncateEnd(detail, DETAIL_CHARS) });
  return lines;
}

export function linesSize(lines: readonly LabelLine[], pill: boolean): Size {
  let text = 0;
  for (const line of lines) {
    const mono = line.role !== "name";
    text = Math.max(text, estimateTextWidth(line.text, mono ? DETAIL_FONT : NAME_FONT, mono));
  }
  const height = lines.length * LINE_HEIGHT + 2 * PAD_Y;
  return { width: Math.ceil(Math.max(MIN_WIDTH, text + 2 * PAD_X + (pill ? height / 2 : 0))), height };
}

/** The box of node i alone (without its folded leaves). */
export function nodeBoxSize(ix: GraphIndex, i: number, module: boolean): Size {
  return linesSize(nodeLines(ix, i, module), ix.kind[i] === KIND_LEAF);
}

/** A folded leaf's pill text: its name, the tail kept (`…layers.3.mlp.fc1.weight`). */
export function leafText(ix: GraphIndex, i: number, module: boolean): string {
  return truncateStart(shownName(ix, i, module), LEAF_CHARS);
}

export function leafPillWidth(ix: GraphIndex, i: number, module: boolean): number {
  return Math.ceil(estimateTextWidth(leafText(ix, i, module), LEAF_FONT, true) + LEAF_HEIGHT);
}

/** A node item: its box, and to its right the column of folded leaves. */
export function nodeItemSize(ix: GraphIndex, i: number, leaves: readonly number[], module: boolean): Size {
  const box = nodeBoxSize(ix, i, module);
  if (leaves.length === 0) return box;
  let column = 0;
  for (const l of leaves) column = Math.max(column, leafPillWidth(ix, l, module));
  const stacked = leaves.length * LEAF_HEIGHT + (leaves.length - 1) * LEAF_GAP;
  return { width: box.width + LEAF_INDENT + column, height: Math.max(box.height, stacked) };
}

/** What a group is called on canvas: `layers.3` rather than a bare `3`. */
export function groupTitle(group: Group, parent: Group | undefined): string {
  if (/^\d+$/.test(group.name) && parent && parent.name !== "") return `${parent.name}.${group.name}`;
  return group.name || "(root)";
}

/** The lines of a collapsed group box: title, node count, then badges (drawn as they change). */
export function groupLines(group: Group, parent: Group | undefined): string[] {
  return [truncateEnd(groupTitle(group, parent), NAME_CHARS), `${formatCount(group.total)} nodes`, ""];
}

export function groupBoxSize(group: Group, parent: Group | undefined): Size {
  const [title = "", count = ""] = groupLines(group, parent);
  const text = Math.max(estimateTextWidth(title, NAME_FONT), estimateTextWidth(count, DETAIL_FONT, true));
  return { width: Math.ceil(Math.max(GROUP_MIN_WIDTH, text + 2 * PAD_X)), height: 3 * LINE_HEIGHT + 2 * PAD_Y };
}

/** The badges of a group, shortest first: what the box's last line and the outline entry show. */
export function groupBadges(group: Group): string[] {
  const badges: string[] = [];
  if (group.nonfinite > 0) badges.push("NaN/Inf");
  if (group.repeat) badges.push(`${group.repeat.index + 1} of ${group.repeat.count} identical`);
  if (group.series >= 2) badges.push(`×${group.series} identical blocks`);
  if (Number.isFinite(group.maxNorm)) badges.push(`max ‖g‖ ${formatNumber(group.maxNorm)}`);
  return badges;
}

/** Frame header text: "▾ encoder.layers · 1,234 nodes". */
export function frameTitle(group: Group): string {
  return `▾ ${group.path} · ${formatCount(group.total)} nodes`;
}
