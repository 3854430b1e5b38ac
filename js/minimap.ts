// The overview ([data-gradsight="minimap"]): the whole scene shrunk into a corner canvas, with the
// part the main view shows outlined. Click or drag on it to move the view there. The shrunk scene
// is drawn once per scene into an offscreen canvas; a pan or zoom only copies it and draws the
// viewport rectangle.

import type { Palette } from "./palette";
import type { Scene } from "./scene";
import type { Transform } from "./state";

export interface MinimapEvents {
  /** Centre the main view on this layout point. */
  moveTo(x: number, y: number): void;
  /** The colours to draw with, asked at each draw: a new palette redraws the shrunk scene. */
  palette(): Palette;
}

const WIDTH = 180;
const HEIGHT = 120;
const PAD = 4;

export class Minimap {
  readonly el: HTMLCanvasElement;
  private scene: Scene | null = null;
  private palette: Palette | null = null;
  private base: HTMLCanvasElement | null = null;
  private view = { t: { x: 0, y: 0, k: 1 } as Transform, width: 0, height: 0 };
  private dragging: number | null = null;
  private readonly listeners: [string, (e: Event) => void][] = [
    ["pointerdown", (e) => this.onDown(e as PointerEvent)],
    ["pointermove", (e) => this.onMove(e as PointerEvent)],
    ["pointerup", (e) => this.onUp(e as PointerEvent)],
    ["pointercancel", (e) => this.onUp(e as PointerEvent)],
  ];

  constructor(private readonly events: MinimapEvents) {
    this.el = document.createElement("canvas");
    this.el.className = "gs-minimap";
    this.el.setAttribute("data-gradsight", "minimap");
    this.el.setAttribute("aria-label", "overview of the whole graph: click or drag to move the view");
    this.el.setAttribute("role", "img");
    this.el.width = WIDTH;
    this.el.height = HEIGHT;
    for (const [type, fn] of this.listeners) this.el.addEventListener(type, fn);
  }

  setScene(scene: Scene | null): void {
    this.scene = scene;
    this.base = null;
    this.el.hidden = scene === null;
    this.draw();
  }

  /** The main view's transform and size (CSS px): redraw the viewport rectangle. */
  setView(t: Transform, width: number, height: number): void {
    this.view = { t, width, height };
    this.draw();
  }

  destroy(): void {
    for (const [type, fn] of this.listeners) this.el.removeEventListener(type, fn);
    this.el.remove();
  }

  /** Scale and offset from layout units to minimap pixels. */
  private frame(): { s: number; ox: number; oy: number } {
    const scene = this.scene;
    const w = Math.max(1, scene?.width ?? 1);
    const h = Math.max(1, scene?.height ?? 1);
    const s = Math.min((WIDTH - 2 * PAD) / w, (HEIGHT - 2 * PAD) / h);
    return { s, ox: (WIDTH - w * s) / 2, oy: (HEIGHT - h * s) / 2 };
  }

  /** Layout point under a pointer event. */
  point(e: MouseEvent): { x: number; y: number } {
    const rect = this.el.getBoundingClientRect();
    const sx = rect.width > 0 ? ((e.clientX - rect.left) * WIDTH) / rect.width : e.clientX - rect.left;
    const sy = rect.height > 0 ? ((e.clientY - rect.top) * HEIGHT) / rect.height : e.clientY - rect.top;
    const { s, ox, oy } = this.frame();
    return { x: (sx - ox) / s, y: (sy - oy) / s };
  }

  private context(el: HTMLCanvasElement): CanvasRenderingContext2D | null {
    try {
      return el.getContext("2d");
    } catch {
      return null;
    }
  }

  private drawBase(): HTMLCanvasElement | null {
    const scene = this.scene;
    const palette = this.palette;
    if (!scene || !palette) return null;
    const base = document.createElement("canvas");
    base.width = WIDTH;
    base.height = HEIGHT;
    const ctx = this.context(base);
    if (!ctx) return null;
    const { s, ox, oy } = this.frame();
    ctx.fillStyle = palette.bg2;
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    ctx.strokeStyle = palette.border;
    ctx.lineWidth = 1;
    for (const f of scene.frames) {
      ctx.strokeRect(
        ox + (scene.x[f] as number) * s,
        oy + (scene.y[f] as number) * s,
        (scene.w[f] as number) * s,
        (scene.h[f] as number) * s,
      );
    }
    ctx.fillStyle = palette.fg2;
    ctx.beginPath();
    const g = scene.grid;
    for (let id = 0; id < g.size; id++) {
      ctx.rect(
        ox + (g.x[id] as number) * s,
        oy + (g.y[id] as number) * s,
        Math.max(1, (g.w[id] as number) * s),
        Math.max(1, (g.h[id] as number) * s),
      );
    }
    ctx.fill();
    return base;
  }

  private draw(): void {
    if (!this.scene) return;
    const ctx = this.context(this.el);
    if (!ctx) return;
    const palette = this.events.palette();
    if (palette !== this.palette) {
      this.palette = palette;
      this.base = null;
    }
    this.base ??= this.drawBase();
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    if (this.base) ctx.drawImage(this.base, 0, 0);
    const { t, width, height } = this.view;
    const { s, ox, oy } = this.frame();
    ctx.strokeStyle = palette.brand;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(ox + (-t.x / t.k) * s, oy + (-t.y / t.k) * s, (width / t.k) * s, (height / t.k) * s);
  }

  private onDown(e: PointerEvent): void {
    if (e.button !== 0 || !this.scene) return;
    e.preventDefault();
    this.dragging = e.pointerId;
    this.el.setPointerCapture?.(e.pointerId);
    const p = this.point(e);
    this.events.moveTo(p.x, p.y);
  }

  private onMove(e: PointerEvent): void {
    if (this.dragging !== e.pointerId) return;
    const p = this.point(e);
    this.events.moveTo(p.x, p.y);
  }

  private onUp(e: PointerEvent): void {
    if (this.dragging !== e.pointerId) return;
    this.dragging = null;
    if (this.el.hasPointerCapture?.(e.pointerId)) this.el.releasePointerCapture(e.pointerId);
  }
}
