// The big-graph canvas element: sizing for devicePixelRatio, one redraw per animation frame however
// many events ask for it (pan, zoom, hover, a new scene), picking through the scene's grid for
// clicks and hover, and the keyboard (arrows move a cursor between connected items, Enter or Space
// activates it). Drawing itself is canvas-draw.ts; pan and zoom are panzoom.ts, which this view
// hands the canvas to. jsdom (and a browser that refuses a context) has no 2D context: everything
// but the pixels still works.

import { type DrawInput, drawFrame, type Marks } from "./canvas-draw";
import { recordFrame } from "./frames";
import { claimKeys, plainKey } from "./keys";
import type { Step } from "./navigate";
import { keyToStep } from "./navigate";
import type { Palette } from "./palette";
import type { Scene } from "./scene";
import type { Transform } from "./state";

export interface CanvasEvents {
  /** Click, or Enter / Space on the keyboard cursor, on target `id`. */
  activate(id: number): void;
  /** An arrow key from target `id`: the target to move the cursor to, or -1. */
  step(id: number, step: Step): number;
  /** Where the keyboard cursor starts when the canvas gets focus (-1: nowhere). */
  firstCursor(): number;
  /** The cursor moved to `id` by keyboard: keep it on screen. */
  cursorMoved(id: number): void;
  /** Text for the tooltip of target `id`. */
  describe(id: number): string;
  /** The colours of this frame: asked at each frame, so a palette read while detached is not kept. */
  palette(): Palette;
  /** A frame was drawn (with or without a 2D context). */
  drawn(): void;
}

/** Size assumed while the canvas is not laid out (hidden tab, jsdom): the CSS height. */
const FALLBACK = { width: 800, height: 520 };
/** Screen pixels of slack when picking, so thin pills are easy to hit. */
const PICK_SLACK_PX = 2;

type Frame = (cb: () => void) => number;

export class CanvasView {
  readonly el: HTMLCanvasElement;
  input: Omit<DrawInput, "t" | "width" | "height" | "dpr" | "marks" | "palette"> | null = null;
  readonly marks: Marks = {
    selected: -1,
    hover: -1,
    cursor: -1,
    pathItems: null,
    added: new Set(),
    nonfinite: new Set(),
    maxNorm: 0,
  };
  private transform: Transform = { x: 0, y: 0, k: 1 };
  private ctx: CanvasRenderingContext2D | null | undefined;
  private frame = 0;
  private focused = false;
  private readonly raf: Frame;
  private readonly observer: ResizeObserver | null;
  private readonly cancelRaf: (id: number) => void;
  private readonly listeners: [string, (e: Event) => void][] = [
    ["click", (e) => this.onClick(e as MouseEvent)],
    ["pointermove", (e) => this.onPointer(e as PointerEvent)],
    ["pointerleave", () => this.setHover(-1)],
    ["keydown", (e) => this.onKey(e as KeyboardEvent)],
    ["focus", () => this.onFocus(true)],
    ["blur", () => this.onFocus(false)],
  ];

  constructor(private readonly events: CanvasEvents) {
    this.el = document.createElement("canvas");
    this.el.className = "gs-canvas";
    this.el.tabIndex = 0;
    claimKeys(this.el, "arrows enter"); // before Notebook 7 takes them: see keys.ts
    this.el.setAttribute("role", "application");
    this.el.setAttribute("aria-roledescription", "graph canvas");
    this.el.setAttribute(
      "aria-label",
      "backward graph: arrow keys move between connected nodes, Enter selects a node or opens a group; the outline lists every node",
    );
    this.el.setAttribute("data-gradsight", "canvas");
    for (const [type, fn] of this.listeners) this.el.addEventListener(type, fn);
    const hasRaf = typeof requestAnimationFrame === "function";
    this.raf = hasRaf ? (cb) => requestAnimationFrame(cb) : (cb) => window.setTimeout(cb, 16);
    this.cancelRaf = hasRaf ? (id) => cancelAnimationFrame(id) : (id) => window.clearTimeout(id);
    // A new size needs a new backing store (draw() resizes it), even when the view stays put. The
    // first size is also the first frame in the page: the one whose palette has the host's colours.
    this.observer = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => this.requestDraw());
    this.observer?.observe(this.el);
  }

  get scene(): Scene | null {
    return this.input?.scene ?? null;
  }

  size(): { width: number; height: number } {
    const width = this.el.clientWidth;
    const height = this.el.clientHeight;
    return width > 0 && height > 0 ? { width, height } : FALLBACK;
  }

  /** The pan/zoom transform changed (panzoom.ts calls this): redraw on the next frame. */
  setTransform(t: Transform): void {
    this.transform = t;
    this.requestDraw();
  }

  /** Ask for a redraw; many asks before the next animation frame make one frame. */
  requestDraw(): void {
    if (this.frame !== 0) return;
    this.frame = this.raf(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** The target under a point in CSS pixels relative to the canvas, or -1. */
  pickAt(sx: number, sy: number): number {
    const scene = this.scene;
    if (!scene) return -1;
    const t = this.transform;
    return scene.grid.pick((sx - t.x) / t.k, (sy - t.y) / t.k, PICK_SLACK_PX / t.k);
  }

  setCursor(id: number): void {
    if (this.marks.cursor === id) return;
    this.marks.cursor = id;
    this.requestDraw();
  }

  destroy(): void {
    if (this.frame !== 0) this.cancelRaf(this.frame);
    this.frame = 0;
    this.observer?.disconnect();
    for (const [type, fn] of this.listeners) this.el.removeEventListener(type, fn);
    this.el.remove();
  }

  private context(): CanvasRenderingContext2D | null {
    if (this.ctx === undefined) {
      try {
        this.ctx = this.el.getContext("2d");
      } catch {
        this.ctx = null;
      }
    }
    return this.ctx;
  }

  private draw(): void {
    const input = this.input;
    const ctx = this.context();
    if (input && ctx) {
      const start = performance.now();
      const { width, height } = this.size();
      const dpr = typeof devicePixelRatio === "number" && devicePixelRatio > 0 ? devicePixelRatio : 1;
      const pw = Math.round(width * dpr);
      const ph = Math.round(height * dpr);
      if (this.el.width !== pw || this.el.height !== ph) {
        this.el.width = pw;
        this.el.height = ph;
      }
      const marks = this.focused ? this.marks : { ...this.marks, cursor: -1 };
      const palette = this.events.palette();
      drawFrame(ctx, { ...input, t: this.transform, width, height, dpr, palette, marks });
      recordFrame(start, performance.now());
    }
    this.events.drawn();
  }

  private local(e: MouseEvent): { x: number; y: number } {
    const rect = this.el.getBoundingClientRect();
    return { x: e.clientX - rect.left, y: e.clientY - rect.top };
  }

  private onClick(e: MouseEvent): void {
    // panzoom.ts marks the click that ends a drag as handled: a pan must not select.
    if (e.defaultPrevented) return;
    const p = this.local(e);
    const id = this.pickAt(p.x, p.y);
    if (id < 0) return;
    this.setCursor(id);
    this.events.activate(id);
  }

  private onPointer(e: PointerEvent): void {
    if (e.buttons !== 0) return; // dragging: panzoom.ts pans, hover stays as it was
    const p = this.local(e);
    this.setHover(this.pickAt(p.x, p.y));
  }

  private setHover(id: number): void {
    if (this.marks.hover === id) return;
    this.marks.hover = id;
    this.el.classList.toggle("gs-over-target", id >= 0);
    if (id >= 0) this.el.title = this.events.describe(id);
    else this.el.removeAttribute("title");
    this.requestDraw();
  }

  private onFocus(on: boolean): void {
    this.focused = on;
    if (on && this.marks.cursor < 0) this.marks.cursor = this.events.firstCursor();
    this.requestDraw();
  }

  private onKey(e: KeyboardEvent): void {
    if (!plainKey(e)) return; // Shift+Enter, Ctrl+S, … are the notebook's
    const cursor = this.marks.cursor;
    if (e.key === "Enter" || e.key === " ") {
      if (cursor < 0) return;
      e.preventDefault();
      this.events.activate(cursor);
      return;
    }
    const direction = this.input?.scene.direction ?? "TB";
    const step = keyToStep(e.key, direction);
    if (!step) return;
    e.preventDefault();
    const from = cursor >= 0 ? cursor : this.events.firstCursor();
    const to = from >= 0 ? this.events.step(from, step) : -1;
    const next = to >= 0 ? to : from;
    if (next < 0) return;
    this.setCursor(next);
    this.events.cursorMoved(next);
  }

  /** Whether the canvas has keyboard focus (the cursor ring is drawn only then). */
  get hasFocus(): boolean {
    return this.focused;
  }
}
