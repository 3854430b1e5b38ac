// UI-only state: what the user is doing with this one view (pan/zoom, hover, keyboard focus).
// It is never synced to Python and is lost when the view is re-rendered; synced state (the graph,
// the selection, status, options) lives in the anywidget model, read through model.ts.

export interface Transform {
  /** Screen position of layout point (0, 0), in pixels. */
  x: number;
  y: number;
  /** Zoom factor: screen pixels per layout unit. */
  k: number;
}

export const MIN_ZOOM = 0.005;
export const MAX_ZOOM = 4;

export interface ViewState {
  transform: Transform;
  hovered: string | null;
  /** Node whose element had keyboard focus last, so a re-render can give it back. */
  focused: string | null;
  /** Set once the user has panned or zoomed; a resize then keeps their view instead of re-fitting. */
  userMoved: boolean;
}

export function initialViewState(): ViewState {
  return { transform: { x: 0, y: 0, k: 1 }, hovered: null, focused: null, userMoved: false };
}

export function clampZoom(k: number): number {
  return Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
}

/** Zoom by `factor` keeping the screen point (px, py) over the same layout point. */
export function zoomAt(t: Transform, factor: number, px: number, py: number): Transform {
  const k = clampZoom(t.k * factor);
  const ratio = k / t.k;
  return { k, x: px - (px - t.x) * ratio, y: py - (py - t.y) * ratio };
}

export function transformAttr(t: Transform): string {
  return `translate(${round(t.x)},${round(t.y)}) scale(${t.k.toPrecision(6)})`;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}
