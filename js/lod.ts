// Level of detail for the canvas: what is worth drawing at a zoom level. Text below ~5 screen
// pixels is noise and the most expensive thing to draw, outlines under 0.2× are sub-pixel, and
// curves cost more than lines with nothing to gain when a view holds thousands of edges
// (research/widget-and-testing.md §4.4: no text below 0.4×, no strokes below 0.2×). Pure.

export interface Lod {
  /** Node names (the first label line). */
  names: boolean;
  /** The other label lines (module, variable, shape) and folded leaves' names. */
  details: boolean;
  /** Box outlines; without them boxes are plain filled rectangles. */
  strokes: boolean;
  /** Rounded corners and pill-shaped leaves. */
  rounded: boolean;
  /** Curved edges; straight segments otherwise. */
  curves: boolean;
  arrows: boolean;
  /** The gradient-norm bar under each node. */
  bars: boolean;
}

export const TEXT_ZOOM = 0.4;
export const DETAIL_ZOOM = 0.55;
export const STROKE_ZOOM = 0.2;
export const ROUND_ZOOM = 0.35;
export const CURVE_ZOOM = 0.3;
export const ARROW_ZOOM = 0.45;
/** Past this many edges in view, straight segments even when zoomed in. */
export const CURVE_BUDGET = 4000;
/** A group's title is written when its box is at least this wide on screen (px), at any zoom. */
export const GROUP_TITLE_MIN_PX = 48;

export function lodFor(k: number, edgesInView = 0): Lod {
  return {
    names: k >= TEXT_ZOOM,
    details: k >= DETAIL_ZOOM,
    strokes: k >= STROKE_ZOOM,
    rounded: k >= ROUND_ZOOM,
    curves: k >= CURVE_ZOOM && edgesInView <= CURVE_BUDGET,
    arrows: k >= ARROW_ZOOM,
    bars: k >= CURVE_ZOOM,
  };
}

/** Whether a box `width` layout units wide at zoom `k` has room for a screen-size title. */
export function titleFits(width: number, k: number): boolean {
  return width * k >= GROUP_TITLE_MIN_PX;
}
