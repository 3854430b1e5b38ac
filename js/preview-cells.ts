// Pure arithmetic of the values preview (no DOM): the grid a preview is drawn on, where one cell
// lies in the full tensor (leading dims fixed by `index`, trailing dims block-averaged by `block`),
// how a cell reads in words, and the diverging colour map (centred on 0; NaN and ±Inf get colours
// of their own so they can never pass for large finite values).

import { formatElement, formatShape } from "./format";
import type { PreviewValues, WirePreview } from "./wire";

export type RGBA = readonly [number, number, number, number];

export const NAN_RGBA: RGBA = [200, 0, 200, 255];
export const POSINF_RGBA: RGBA = [255, 193, 7, 255];
export const NEGINF_RGBA: RGBA = [0, 188, 212, 255];
const POSITIVE = [214, 39, 40] as const;
const NEGATIVE = [31, 119, 180] as const;

export interface Grid {
  rows: number;
  cols: number;
}

/** A 2-D preview is a heatmap of its rows and columns; a 1-D one a strip; a 0-D one a single cell. */
export function previewGrid(p: WirePreview): Grid {
  if (p.shape.length >= 2) return { rows: p.shape[0] ?? 1, cols: p.shape[1] ?? 1 };
  return { rows: 1, cols: p.shape[0] ?? 1 };
}

/** Number of leading dims the preview fixes (the slice inputs). */
export function leadingDims(p: WirePreview): number {
  return Math.max(0, p.full_shape.length - p.shape.length);
}

/** Largest finite |value|: the colour map's ends are ±scale. */
export function colourScale(values: PreviewValues): number {
  let scale = 0;
  for (const v of values) if (Number.isFinite(v) && Math.abs(v) > scale) scale = Math.abs(v);
  return scale;
}

/**
 * Colour of one value: red above 0, blue below, more opaque the larger |v| (so 0 shows the theme's
 * background, light or dark); NaN magenta, +Inf amber, −Inf cyan, always fully opaque.
 */
export function cellColour(v: number, scale: number): RGBA {
  if (Number.isNaN(v)) return NAN_RGBA;
  if (v === Number.POSITIVE_INFINITY) return POSINF_RGBA;
  if (v === Number.NEGATIVE_INFINITY) return NEGINF_RGBA;
  const t = scale > 0 ? Math.min(1, Math.abs(v) / scale) : 0;
  const [r, g, b] = v < 0 ? NEGATIVE : POSITIVE;
  return [r, g, b, t === 0 ? 0 : Math.round(24 + 231 * t)];
}

export function cssColour(c: RGBA): string {
  return `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${Math.round((c[3] / 255) * 100) / 100})`;
}

/** Per index of the full tensor: one position, or the half-open range a block-averaged cell covers. */
export type Span = number | [number, number];

export function cellSpans(p: WirePreview, row: number, col: number): Span[] {
  const spans: Span[] = [...p.index];
  const cells = p.shape.length >= 2 ? [row, col] : p.shape.length === 1 ? [col] : [];
  cells.forEach((cell, i) => {
    const dim = p.full_shape[p.index.length + i] ?? 0;
    const block = p.block[i] ?? 1;
    const start = cell * block;
    const end = Math.min(start + block, Math.max(dim, start + 1));
    spans.push(end - start === 1 ? start : [start, end]);
  });
  return spans;
}

/** Python's indexing of the cell: `[2, 4:8, 10]`; a 0-d tensor is `[()]`. */
export function spansText(spans: readonly Span[]): string {
  if (spans.length === 0) return "[()]";
  return `[${spans.map((s) => (typeof s === "number" ? String(s) : `${s[0]}:${s[1]}`)).join(", ")}]`;
}

/** What the readout says for a cell: where it is in the full tensor and its (averaged) value. */
export function readoutText(p: WirePreview, values: PreviewValues, row: number, col: number): string {
  const { cols } = previewGrid(p);
  const v = values[row * cols + col];
  if (v === undefined) return "";
  const spans = cellSpans(p, row, col);
  let count = 1;
  for (const s of spans) if (typeof s !== "number") count *= s[1] - s[0];
  const where = spansText(spans);
  return count > 1 ? `${where}  mean of ${count} values = ${formatElement(v)}` : `${where} = ${formatElement(v)}`;
}

/** "each cell averages 16 values (4 × 4)", or null when every cell is one value. */
export function blockText(p: WirePreview): string | null {
  const total = p.block.reduce((a, b) => a * b, 1);
  if (total <= 1) return null;
  return `each cell averages ${total} values${p.block.length > 1 ? ` (${p.block.join(" × ")})` : ""}`;
}

/** `x[2, :, :] of (4, 16, 10)`: which slice of the tensor the preview shows. */
export function sliceText(p: WirePreview): string {
  const parts = [...p.index.map(String), ...p.shape.map(() => ":")];
  return `${parts.length > 0 ? `[${parts.join(", ")}]` : "value"} of ${formatShape(p.full_shape)}`;
}
