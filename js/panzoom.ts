// Pan and zoom of the graph: wheel zooms toward the pointer, dragging the background (or a node,
// past a few pixels) pans, and fit / zoom buttons call in here. The transform lives in the UI-only
// ViewState (state.ts) and is applied as one SVG transform attribute on the viewport group, or
// handed to a callback (the canvas view redraws on its next animation frame).

import { clampZoom, type Transform, transformAttr, type ViewState, zoomAt } from "./state";

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Margin around a fitted graph, in screen pixels. */
const MARGIN = 24;
/**
 * The automatic fit shows the whole graph down to this zoom (labels still legible, and every node
 * on screen, where a click can reach it). A deeper graph would shrink to dots instead: it is shown
 * at READABLE_ZOOM from its root, and the fit button still shows all of it.
 */
const FIT_FLOOR = 0.4;
const READABLE_ZOOM = 0.8;
/** Pointer travel (px) before a press becomes a drag instead of a click. */
const DRAG_THRESHOLD = 4;
/** Size assumed while the widget is not laid out yet (hidden tab, jsdom): the CSS height. */
const FALLBACK = { width: 800, height: 520 };

export class PanZoom {
  private drag: { id: number; x: number; y: number; start: Transform; moved: boolean } | null = null;
  private suppressClick = false;
  private refit: (() => void) | null = null;
  private readonly observer: ResizeObserver | null;
  private readonly listeners: [EventTarget, string, EventListener, AddEventListenerOptions?][];

  /** `svg`: the surface that takes the pointer (an <svg> or a <canvas>); `viewport`: what the transform moves. */
  constructor(
    private readonly svg: SVGSVGElement | HTMLElement,
    private readonly viewport: SVGGElement | ((t: Transform) => void),
    private readonly state: ViewState,
  ) {
    this.listeners = [
      [svg, "wheel", (e) => this.onWheel(e as WheelEvent), { passive: false }],
      [svg, "pointerdown", (e) => this.onDown(e as PointerEvent)],
      [svg, "pointermove", (e) => this.onMove(e as PointerEvent)],
      [svg, "pointerup", (e) => this.onUp(e as PointerEvent)],
      [svg, "pointercancel", (e) => this.onUp(e as PointerEvent)],
      // Capture phase: a drag that ends over a node must not also select it.
      [svg, "click", (e) => this.onClickCapture(e), { capture: true }],
    ];
    for (const [target, type, fn, opts] of this.listeners) target.addEventListener(type, fn, opts);
    // The view may be rendered before it is attached or while hidden (size 0): fit again once
    // it has a size, unless the user has moved the view since.
    this.observer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => this.onResize());
    this.observer?.observe(svg);
    this.apply(state.transform);
  }

  size(): { width: number; height: number } {
    const width = this.svg.clientWidth;
    const height = this.svg.clientHeight;
    return width > 0 && height > 0 ? { width, height } : FALLBACK;
  }

  apply(t: Transform): void {
    this.state.transform = t;
    if (typeof this.viewport === "function") this.viewport(t);
    else this.viewport.setAttribute("transform", transformAttr(t));
  }

  /** Centre `box` on screen, zooming in to at least `minZoom` (search hits, Python's selection). */
  centre(box: Box, minZoom = READABLE_ZOOM): void {
    const { width, height } = this.size();
    const k = clampZoom(Math.max(this.state.transform.k, minZoom));
    this.state.userMoved = true;
    this.apply({ k, x: width / 2 - (box.x + box.width / 2) * k, y: height / 2 - (box.y + box.height / 2) * k });
  }

  /** Show the whole box (the fit button). */
  fit(box: Box): void {
    this.refit = () => this.fit(box);
    this.state.userMoved = false;
    this.apply(this.fitTransform(box, 1));
  }

  /**
   * Fit the whole box if that stays readable; otherwise (a deep graph) zoom to a readable level,
   * centred on `anchor` (the root) and pushed against the graph's edges so no space is wasted.
   */
  autoFit(box: Box, anchor: Box | null): void {
    this.refit = () => this.autoFit(box, anchor);
    this.state.userMoved = false;
    const full = this.fitTransform(box, 1);
    if (full.k >= FIT_FLOOR || anchor === null) {
      this.apply(full);
      return;
    }
    const { width, height } = this.size();
    const k = READABLE_ZOOM;
    const centred = {
      k,
      x: width / 2 - (anchor.x + anchor.width / 2) * k,
      y: height / 2 - (anchor.y + anchor.height / 2) * k,
    };
    this.apply(clampToBox(centred, box, width, height));
  }

  zoomBy(factor: number): void {
    const { width, height } = this.size();
    this.state.userMoved = true;
    this.apply(zoomAt(this.state.transform, factor, width / 2, height / 2));
  }

  /** Pan (never zoom out of readability) so that `box` is on screen; does nothing when it already is. */
  ensureVisible(box: Box): void {
    const { width, height } = this.size();
    const t = this.state.transform;
    const left = box.x * t.k + t.x;
    const top = box.y * t.k + t.y;
    const inside = left >= 0 && top >= 0 && left + box.width * t.k <= width && top + box.height * t.k <= height;
    if (inside) return;
    const k = Math.max(t.k, Math.min(READABLE_ZOOM, 1));
    const cx = box.x + box.width / 2;
    const cy = box.y + box.height / 2;
    this.apply({ k, x: width / 2 - cx * k, y: height / 2 - cy * k });
  }

  destroy(): void {
    for (const [target, type, fn, opts] of this.listeners) target.removeEventListener(type, fn, opts);
    this.observer?.disconnect();
  }

  private fitTransform(box: Box, maxZoom: number): Transform {
    const { width, height } = this.size();
    const w = Math.max(box.width, 1);
    const h = Math.max(box.height, 1);
    const k = clampZoom(Math.min((width - 2 * MARGIN) / w, (height - 2 * MARGIN) / h, maxZoom));
    return { k, x: (width - w * k) / 2 - box.x * k, y: (height - h * k) / 2 - box.y * k };
  }

  private onResize(): void {
    if (!this.state.userMoved && this.svg.clientWidth > 0) this.refit?.();
  }

  private onWheel(e: WheelEvent): void {
    e.preventDefault();
    // Lines and pages (Firefox) are much bigger steps than pixels.
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const factor = Math.exp(-e.deltaY * unit * 0.0015);
    const rect = this.svg.getBoundingClientRect();
    this.state.userMoved = true;
    this.apply(zoomAt(this.state.transform, factor, e.clientX - rect.left, e.clientY - rect.top));
  }

  private onDown(e: PointerEvent): void {
    if (e.button !== 0) return;
    this.drag = { id: e.pointerId, x: e.clientX, y: e.clientY, start: this.state.transform, moved: false };
  }

  private onMove(e: PointerEvent): void {
    const d = this.drag;
    if (!d || d.id !== e.pointerId) return;
    const dx = e.clientX - d.x;
    const dy = e.clientY - d.y;
    if (!d.moved && Math.hypot(dx, dy) < DRAG_THRESHOLD) return;
    if (!d.moved) {
      // Capture only once it is a drag: capturing on press would retarget the click of a node.
      d.moved = true;
      this.svg.setPointerCapture?.(e.pointerId);
      this.svg.classList.add("gs-dragging");
    }
    this.state.userMoved = true;
    this.apply({ k: d.start.k, x: d.start.x + dx, y: d.start.y + dy });
  }

  private onUp(e: PointerEvent): void {
    const d = this.drag;
    if (!d || d.id !== e.pointerId) return;
    this.drag = null;
    this.suppressClick = d.moved;
    this.svg.classList.remove("gs-dragging");
    if (d.moved && this.svg.hasPointerCapture?.(e.pointerId)) this.svg.releasePointerCapture(e.pointerId);
  }

  private onClickCapture(e: Event): void {
    if (!this.suppressClick) return;
    this.suppressClick = false;
    e.stopPropagation();
    e.preventDefault();
  }
}

/** Keep a transform from showing empty space beyond the box's edges on an axis the box overflows. */
function clampToBox(t: Transform, box: Box, width: number, height: number): Transform {
  const clampAxis = (offset: number, start: number, extent: number, view: number): number => {
    const size = extent * t.k;
    if (size + 2 * MARGIN <= view) return (view - size) / 2 - start * t.k;
    const max = MARGIN - start * t.k;
    const min = view - MARGIN - (start + extent) * t.k;
    return Math.min(max, Math.max(min, offset));
  };
  return { k: t.k, x: clampAxis(t.x, box.x, box.width, width), y: clampAxis(t.y, box.y, box.height, height) };
}
