// A uniform grid over boxes, for what the canvas needs per frame and per click: the boxes in the
// viewport (culling) and the box under the pointer (picking). Built once per scene in O(boxes);
// a query touches only the cells it overlaps. Boxes spanning many cells are visited once per
// query thanks to a stamp per box.

export interface Box4 {
  x: number;
  y: number;
  w: number;
  h: number;
}

export class SpatialGrid {
  private readonly cell: number;
  private readonly cols: number;
  private readonly rows: number;
  private readonly start: Int32Array;
  private readonly entries: Int32Array;
  private readonly stamp: Uint32Array;
  private tick = 0;

  /** `x, y, w, h`: one box per id (0 .. count - 1); NaN boxes are left out. */
  constructor(
    readonly x: Float64Array,
    readonly y: Float64Array,
    readonly w: Float64Array,
    readonly h: Float64Array,
    width: number,
    height: number,
  ) {
    const count = x.length;
    const area = Math.max(1, width) * Math.max(1, height);
    // About one box per cell, never more than ~4 cells per box on average, and a bounded grid.
    let cell = Math.max(32, Math.sqrt(area / Math.max(1, count)) * 1.5);
    while ((Math.ceil(width / cell) + 1) * (Math.ceil(height / cell) + 1) > Math.max(1024, 4 * count)) cell *= 1.5;
    this.cell = cell;
    this.cols = Math.max(1, Math.ceil(width / cell) + 1);
    this.rows = Math.max(1, Math.ceil(height / cell) + 1);
    const cells = this.cols * this.rows;
    const counts = new Int32Array(cells + 1);
    this.each((_id, c) => {
      counts[c + 1] = (counts[c + 1] as number) + 1;
    });
    for (let c = 0; c < cells; c++) counts[c + 1] = (counts[c + 1] as number) + (counts[c] as number);
    this.start = counts;
    this.entries = new Int32Array(counts[cells] as number);
    const fill = counts.slice(0, cells);
    this.each((id, c) => {
      this.entries[fill[c] as number] = id;
      fill[c] = (fill[c] as number) + 1;
    });
    this.stamp = new Uint32Array(count);
  }

  get size(): number {
    return this.x.length;
  }

  /** Call `fn` once for every box overlapping the rectangle [x0, x1] × [y0, y1]. */
  query(x0: number, y0: number, x1: number, y1: number, fn: (id: number) => void): void {
    if (++this.tick === 0xffffffff) {
      this.stamp.fill(0);
      this.tick = 1;
    }
    const c0 = this.col(x0);
    const c1 = this.col(x1);
    const r0 = this.row(y0);
    const r1 = this.row(y1);
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cellIndex = r * this.cols + c;
        for (let k = this.start[cellIndex] as number; k < (this.start[cellIndex + 1] as number); k++) {
          const id = this.entries[k] as number;
          if (this.stamp[id] === this.tick) continue;
          this.stamp[id] = this.tick;
          const bx = this.x[id] as number;
          const by = this.y[id] as number;
          if (bx > x1 || by > y1 || bx + (this.w[id] as number) < x0 || by + (this.h[id] as number) < y0) continue;
          fn(id);
        }
      }
    }
  }

  /** The smallest box containing the point (the innermost thing under the pointer), or -1. */
  pick(px: number, py: number, slack = 0): number {
    let best = -1;
    let bestArea = Number.POSITIVE_INFINITY;
    this.query(px - slack, py - slack, px + slack, py + slack, (id) => {
      const area = (this.w[id] as number) * (this.h[id] as number);
      if (area < bestArea) {
        best = id;
        bestArea = area;
      }
    });
    return best;
  }

  private col(x: number): number {
    return Math.min(this.cols - 1, Math.max(0, Math.floor(x / this.cell)));
  }

  private row(y: number): number {
    return Math.min(this.rows - 1, Math.max(0, Math.floor(y / this.cell)));
  }

  private each(fn: (id: number, cell: number) => void): void {
    for (let id = 0; id < this.x.length; id++) {
      const bx = this.x[id] as number;
      if (Number.isNaN(bx)) continue;
      const by = this.y[id] as number;
      const c0 = this.col(bx);
      const c1 = this.col(bx + (this.w[id] as number));
      const r0 = this.row(by);
      const r1 = this.row(by + (this.h[id] as number));
      for (let r = r0; r <= r1; r++) for (let c = c0; c <= c1; c++) fn(id, r * this.cols + c);
    }
  }
}
