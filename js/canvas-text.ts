// The text and marks of a canvas frame (canvas-draw.ts draws the shapes): node labels at readable
// zoom, group titles at a fixed screen size when zoomed out, and the outlines of the hovered item,
// the keyboard cursor and the selection, drawn last so nothing hides them.

import { groupBadges, groupLines, leafText, nodeLines } from "./big-label";
import type { DrawInput, Marks } from "./canvas-draw";
import type { Group } from "./groups";
import { type Lod, titleFits } from "./lod";
import { DETAIL_FONT, LINE_HEIGHT, NAME_FONT, PAD_Y } from "./node-label";
import { type Scene, T_GROUP, T_HEADER, T_LEAF, T_NODE } from "./scene";
import type { Item, Visible } from "./visible";

/** Whether visible item `item` is on a path from a root to the selection. */
export function pathHas(d: DrawInput, item: number): boolean {
  return d.marks.pathItems !== null && d.marks.pathItems[item] === 1;
}

/** The node a target shows (T_NODE: its item's node; T_LEAF: the leaf), or -1. */
export function targetNode(d: { visible: Visible; scene: Scene }, id: number): number {
  const kind = d.scene.kind[id];
  const ref = d.scene.ref[id] as number;
  if (kind === T_LEAF) return ref;
  if (kind === T_NODE) return (d.visible.items[ref] as Item).ref;
  return -1;
}

/** One line of text, shrunk (never wrapped) to `maxWidth`; nothing when there is no room. */
export function text(
  ctx: CanvasRenderingContext2D,
  s: string,
  x: number,
  y: number,
  font: string,
  colour: string,
  maxWidth: number,
  align: CanvasTextAlign = "center",
): void {
  if (maxWidth <= 0 || s === "") return;
  ctx.font = font;
  ctx.fillStyle = colour;
  ctx.textAlign = align;
  ctx.textBaseline = "middle";
  ctx.fillText(s, x, y, maxWidth);
}

export function drawLabels(ctx: CanvasRenderingContext2D, d: DrawInput, targets: readonly number[], lod: Lod): void {
  const { scene, palette, ix } = d;
  const nameFont = `600 ${NAME_FONT}px ${palette.font}`;
  const detailFont = `${DETAIL_FONT}px ${palette.mono}`;
  for (const id of targets) {
    const x = scene.grid.x[id] as number;
    const y = scene.grid.y[id] as number;
    const w = scene.grid.w[id] as number;
    const kind = scene.kind[id];
    if (kind === T_NODE) {
      const node = targetNode(d, id);
      const lines = nodeLines(ix, node, d.flat);
      lines.forEach((line, k) => {
        if (k > 0 && !lod.details) return;
        const cy = y + PAD_Y + k * LINE_HEIGHT + LINE_HEIGHT / 2;
        const name = line.role === "name";
        text(ctx, line.text, x + w / 2, cy, name ? nameFont : detailFont, name ? palette.fg : palette.fg2, w - 8);
      });
    } else if (kind === T_LEAF && lod.details) {
      text(
        ctx,
        leafText(ix, scene.ref[id] as number, d.flat),
        x + w / 2,
        y + (scene.grid.h[id] as number) / 2,
        `10px ${palette.mono}`,
        palette.fg,
        w - 6,
      );
    } else if (kind === T_GROUP) {
      const group = d.tree.groups[(d.visible.items[scene.ref[id] as number] as Item).ref] as Group;
      const [title = "", count = ""] = groupLines(group, d.tree.groups[group.parent]);
      const cx = x + w / 2;
      text(ctx, title, cx, y + PAD_Y + LINE_HEIGHT / 2, nameFont, palette.fg, w - 8);
      if (!lod.details) continue;
      text(ctx, count, cx, y + PAD_Y + 1.5 * LINE_HEIGHT, detailFont, palette.fg2, w - 8);
      const badges = groupBadges(group);
      const bad = group.nonfinite > 0;
      text(
        ctx,
        badges.join(" · "),
        cx,
        y + PAD_Y + 2.5 * LINE_HEIGHT,
        detailFont,
        bad ? palette.error : palette.brand,
        w - 8,
      );
    }
  }
}

/** Zoomed out: only group titles, at a fixed screen size, where the box has room for them. */
export function drawTitles(ctx: CanvasRenderingContext2D, d: DrawInput, targets: readonly number[]): void {
  const { scene, palette, t } = d;
  const size = 11 / t.k;
  for (const id of targets) {
    if (scene.kind[id] !== T_GROUP) continue;
    const w = scene.grid.w[id] as number;
    if (!titleFits(w, t.k)) continue;
    const group = d.tree.groups[(d.visible.items[scene.ref[id] as number] as Item).ref] as Group;
    const [title = ""] = groupLines(group, d.tree.groups[group.parent]);
    const x = scene.grid.x[id] as number;
    const y = scene.grid.y[id] as number;
    text(ctx, title, x + w / 2, y + (scene.grid.h[id] as number) / 2, `600 ${size}px ${palette.font}`, palette.fg, w);
  }
}

/** Hover and keyboard cursor: outlines drawn last, on top of everything. */
export function drawMarks(ctx: CanvasRenderingContext2D, d: DrawInput, lod: Lod, px: number): void {
  const { scene, palette, marks } = d;
  const outline = (id: number, width: number, dash: number[]): void => {
    if (id < 0 || id >= scene.kind.length) return;
    const pad = 3 * px;
    const x = (scene.grid.x[id] as number) - pad;
    const y = (scene.grid.y[id] as number) - pad;
    ctx.setLineDash(dash);
    ctx.strokeStyle = palette.brand;
    ctx.lineWidth = width;
    ctx.strokeRect(x, y, (scene.grid.w[id] as number) + 2 * pad, (scene.grid.h[id] as number) + 2 * pad);
    ctx.setLineDash([]);
  };
  if (marks.hover !== marks.cursor) outline(marks.hover, Math.max(1.5, px), []);
  outline(marks.cursor, Math.max(2.5, 2 * px), lod.strokes ? [4, 2] : []);
  // The selection, also when zoomed out past strokes, or hidden in a collapsed group (outline that).
  outline(selectedTarget(d), Math.max(3, 2 * px), []);
}

/** The target showing the selected node: its box, its folded pill, or the group box holding it. */
export function selectedTarget(d: { visible: Visible; scene: Scene; marks: Marks }): number {
  const sel = d.marks.selected;
  if (sel < 0) return -1;
  const leaf = d.scene.leafTarget.get(sel);
  if (leaf !== undefined) return leaf;
  const item = d.visible.nodeItem[sel] as number;
  const target = item >= 0 ? (d.scene.itemTarget[item] as number) : -1;
  return target >= 0 && d.scene.kind[target] !== T_HEADER ? target : -1;
}
