// The values preview of one tensor ([data-preview], a <canvas>): a strip for 1-D slices, a heatmap
// for 2-D ones, one pixel per (block-averaged) cell scaled up by CSS. A readout says which element(s)
// of the full tensor a cell stands for and its value, on hover or with the arrow keys on the focused
// canvas; tensors with more than two dims get number inputs for the leading dims. The inspector
// delegates events here (it owns the listeners); arithmetic and colours live in preview-cells.ts.

import { h, setText } from "./dom";
import { formatNumber } from "./format";
import { ownsKeys, plainKey } from "./keys";
import {
  blockText,
  cellColour,
  colourScale,
  cssColour,
  leadingDims,
  NAN_RGBA,
  NEGINF_RGBA,
  POSINF_RGBA,
  previewGrid,
  readoutText,
  sliceText,
} from "./preview-cells";
import type { PreviewValues, WirePreview } from "./wire";

const WIDTH = 300;
const MAX_HEIGHT = 220;
const MAX_CELL = 18;
const STRIP_HEIGHT = 16;
const HINT = "hover a cell, or focus the preview and use the arrow keys, to read its value";

export type PreviewStatus = "loading" | "done" | "error";

export class PreviewView {
  readonly el: HTMLElement;
  private readonly slices: HTMLElement;
  private readonly info: HTMLElement;
  private readonly frame: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly cursorEl: HTMLElement;
  private readonly readout: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly error: HTMLElement;
  private inputs: HTMLInputElement[] = [];
  private cursor: { row: number; col: number } | null = null;

  constructor(
    private preview: WirePreview,
    private values: PreviewValues,
  ) {
    this.slices = h("div", { class: "gs-preview-slices", hidden: true });
    this.info = h("div", { class: "gs-muted gs-preview-info" });
    this.canvas = h("canvas", {
      class: "gs-preview-canvas",
      "data-preview": "",
      tabindex: 0,
      role: "img",
      ...ownsKeys("arrows escape"),
    });
    this.cursorEl = h("div", { class: "gs-preview-cursor", hidden: true });
    this.frame = h("div", { class: "gs-preview-frame" }, this.canvas, this.cursorEl);
    this.readout = h("div", { class: "gs-preview-readout", "data-preview-readout": "", "aria-live": "polite" }, HINT);
    this.legend = h("div", { class: "gs-preview-legend", "data-preview-legend": "" });
    this.error = h("div", { class: "gs-preview-error", "data-preview-error": "", role: "alert", hidden: true });
    this.el = h(
      "div",
      { class: "gs-preview", "data-preview-status": "done" },
      h("h5", {}, "values"),
      this.slices,
      this.info,
      this.frame,
      this.readout,
      this.legend,
      this.error,
    );
    this.update(preview, values);
  }

  /** Show a new preview (another slice of the same tensor, or a fresh inspection). */
  update(preview: WirePreview, values: PreviewValues): void {
    this.preview = preview;
    this.values = values;
    const { rows, cols } = previewGrid(preview);
    const attrs: Record<string, string> = {
      "data-preview": preview.shape.length >= 2 ? "heatmap" : "strip",
      "data-shape": preview.shape.join(","),
      "data-full-shape": preview.full_shape.join(","),
      "data-block": preview.block.join(","),
      "data-index": preview.index.join(","),
      width: String(cols),
      height: String(rows),
      "aria-label": `values of ${sliceText(preview)}: ${this.hint()}`,
    };
    for (const [name, value] of Object.entries(attrs)) this.canvas.setAttribute(name, value);
    this.size(rows, cols);
    this.buildSlices();
    setText(this.info, [sliceText(preview), blockText(preview)].filter((x) => x !== null).join(" · "));
    const scale = colourScale(values);
    this.draw(rows, cols, scale);
    this.buildLegend(scale);
    if (this.cursor && (this.cursor.row >= rows || this.cursor.col >= cols)) this.cursor = null;
    this.showCursor();
    this.setStatus("done");
  }

  setStatus(status: PreviewStatus, text = ""): void {
    this.el.setAttribute("data-preview-status", status);
    setText(this.error, status === "error" ? text : "");
    this.error.hidden = status !== "error";
  }

  /** The leading-dim index the inputs ask for, clamped to the tensor (and written back clamped). */
  sliceIndex(): number[] {
    return this.inputs.map((input, d) => {
      const size = this.preview.full_shape[d] ?? 1;
      const raw = Math.round(Number(input.value));
      const v = Number.isFinite(raw) && input.value !== "" ? raw : (this.preview.index[d] ?? 0);
      const clamped = Math.min(size - 1, Math.max(0, v));
      input.value = String(clamped);
      return clamped;
    });
  }

  setSliceIndex(index: readonly number[]): void {
    this.inputs.forEach((input, d) => {
      input.value = String(index[d] ?? 0);
    });
  }

  /** Hover at client coordinates: read the cell under the pointer. */
  pointAt(clientX: number, clientY: number): void {
    const rect = this.canvas.getBoundingClientRect();
    if (rect.width <= 0 || rect.height <= 0) return;
    const { rows, cols } = previewGrid(this.preview);
    const col = Math.floor(((clientX - rect.left) / rect.width) * cols);
    const row = Math.floor(((clientY - rect.top) / rect.height) * rows);
    if (col < 0 || row < 0 || col >= cols || row >= rows) return;
    this.cursor = { row, col };
    this.showCursor();
  }

  /** Arrow keys move the cursor cell, Escape hides it; true when the key was used. */
  key(e: KeyboardEvent): boolean {
    if (!plainKey(e)) return false;
    const { rows, cols } = previewGrid(this.preview);
    if (rows <= 0 || cols <= 0) {
      // an empty tensor has no cell to put the cursor on; the readout says so (see hint())
      const used = e.key === "Escape" || e.key.startsWith("Arrow");
      if (used) this.showCursor();
      return used;
    }
    const steps: Record<string, [number, number]> = {
      ArrowUp: [-1, 0],
      ArrowDown: [1, 0],
      ArrowLeft: [0, -1],
      ArrowRight: [0, 1],
    };
    if (e.key === "Escape") {
      this.cursor = null;
      this.showCursor();
      return true;
    }
    const step = steps[e.key];
    if (!step) return false;
    const at = this.cursor ?? { row: 0, col: 0 };
    const moved = this.cursor === null ? at : { row: at.row + step[0], col: at.col + step[1] };
    this.cursor = {
      row: Math.min(rows - 1, Math.max(0, moved.row)),
      col: Math.min(cols - 1, Math.max(0, moved.col)),
    };
    this.showCursor();
    return true;
  }

  /** The pointer left the canvas: keep a keyboard cursor, drop a hover one. */
  leave(): void {
    if (this.canvas !== document.activeElement) {
      this.cursor = null;
      this.showCursor();
    }
  }

  private size(rows: number, cols: number): void {
    const cell = rows === 1 ? Math.min(WIDTH / cols, MAX_CELL) : Math.min(WIDTH / cols, MAX_HEIGHT / rows, MAX_CELL);
    const width = `${Math.max(1, Math.round(cols * cell))}px`;
    const height = `${rows === 1 ? STRIP_HEIGHT : Math.max(1, Math.round(rows * cell))}px`;
    for (const el of [this.canvas, this.frame]) {
      el.style.width = width;
      el.style.height = height;
    }
  }

  private draw(rows: number, cols: number, scale: number): void {
    // jsdom has no 2D context, and a browser may refuse one (too many canvases): the element, its
    // data attributes and the readout still work.
    if (rows <= 0 || cols <= 0) return; // an empty tensor: nothing to draw (createImageData throws)
    const ctx = this.canvas.getContext("2d");
    if (!ctx) return;
    const img = ctx.createImageData(cols, rows);
    const n = Math.min(this.values.length, rows * cols);
    for (let i = 0; i < n; i++) img.data.set(cellColour(this.values[i] as number, scale), i * 4);
    ctx.putImageData(img, 0, 0);
  }

  private buildSlices(): void {
    const lead = leadingDims(this.preview);
    const same =
      this.inputs.length === lead &&
      this.inputs.every((input, d) => input.max === String((this.preview.full_shape[d] ?? 1) - 1));
    if (!same) {
      this.inputs = Array.from({ length: lead }, (_, d) => {
        const size = this.preview.full_shape[d] ?? 1;
        return h("input", {
          type: "number",
          class: "gs-slice-input",
          min: 0,
          max: size - 1,
          step: 1,
          "data-slice-dim": d,
          "aria-label": `index along dim ${d} (0 to ${size - 1})`,
        });
      });
      const labels = this.inputs.map((input, d) => h("label", { class: "gs-slice" }, `dim ${d} `, input));
      this.slices.replaceChildren(h("span", { class: "gs-muted" }, "slice "), ...labels);
    }
    this.slices.hidden = lead === 0;
    this.setSliceIndex(this.preview.index);
  }

  private buildLegend(scale: number): void {
    const swatch = (colour: string, text: string, attr: string): HTMLElement => {
      const box = h("span", { class: "gs-swatch" });
      box.style.background = colour;
      return h("span", { class: "gs-legend-item", "data-legend": attr }, box, text);
    };
    const items = [
      swatch(cssColour(cellColour(-1, 1)), formatNumber(-scale), "negative"),
      swatch("transparent", "0", "zero"),
      swatch(cssColour(cellColour(1, 1)), formatNumber(scale), "positive"),
    ];
    let nan = false;
    let pos = false;
    let neg = false;
    for (const v of this.values) {
      if (Number.isNaN(v)) nan = true;
      else if (v === Number.POSITIVE_INFINITY) pos = true;
      else if (v === Number.NEGATIVE_INFINITY) neg = true;
    }
    if (nan) items.push(swatch(cssColour(NAN_RGBA), "NaN", "nan"));
    if (pos) items.push(swatch(cssColour(POSINF_RGBA), "+Inf", "posinf"));
    if (neg) items.push(swatch(cssColour(NEGINF_RGBA), "−Inf", "neginf"));
    this.legend.replaceChildren(...items);
  }

  /** What the readout says with no cell under the cursor. */
  private hint(): string {
    const { rows, cols } = previewGrid(this.preview);
    return rows <= 0 || cols <= 0 ? `no values to read: ${sliceText(this.preview)} is empty` : HINT;
  }

  private showCursor(): void {
    const c = this.cursor;
    this.cursorEl.hidden = c === null;
    if (c === null) {
      setText(this.readout, this.hint());
      this.readout.removeAttribute("data-cell");
      return;
    }
    const { rows, cols } = previewGrid(this.preview);
    const style = this.cursorEl.style;
    style.left = `${(c.col / cols) * 100}%`;
    style.top = `${(c.row / rows) * 100}%`;
    style.width = `${100 / cols}%`;
    style.height = `${100 / rows}%`;
    this.readout.setAttribute("data-cell", `${c.row},${c.col}`);
    setText(this.readout, readoutText(this.preview, this.values, c.row, c.col));
  }
}
