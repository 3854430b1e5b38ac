// Where the big view's things stand, as pure functions of the scene and the visible graph: the
// target that shows a node, and a group's place on screen, kept across a relayout (expanding a
// group leaves it where it was). big-view.ts applies what these return.

import type { Scene } from "./scene";
import type { Transform } from "./state";
import type { Visible } from "./visible";

/** Where a group's box or frame is on screen (pixels). */
export interface Anchor {
  group: number;
  sx: number;
  sy: number;
}

/** The item showing group g in a laid-out scene, or -1 (not visible, or not placed). */
function placedItem(visible: Visible | null, scene: Scene, g: number): number {
  const item = visible?.groupItem[g] ?? -1;
  return item < 0 || Number.isNaN(scene.x[item] as number) ? -1 : item;
}

/** Where group g is on screen under transform t, or null where the scene does not place it. */
export function anchorOf(visible: Visible | null, scene: Scene | null, t: Transform, g: number): Anchor | null {
  const item = scene ? placedItem(visible, scene, g) : -1;
  if (!scene || item < 0) return null;
  return { group: g, sx: (scene.x[item] as number) * t.k + t.x, sy: (scene.y[item] as number) * t.k + t.y };
}

/** The transform (zoom kept) that puts the anchor's group back where it was; null: not placed. */
export function anchoredTransform(
  visible: Visible | null,
  scene: Scene | null,
  t: Transform,
  anchor: Anchor,
): Transform | null {
  const item = scene ? placedItem(visible, scene, anchor.group) : -1;
  if (!scene || item < 0) return null;
  return {
    k: t.k,
    x: anchor.sx - (scene.x[item] as number) * t.k,
    y: anchor.sy - (scene.y[item] as number) * t.k,
  };
}

/** The target showing node i (its box, its folded pill, or the collapsed group holding it), or -1. */
export function nodeTarget(scene: Scene | null, visible: Visible | null, i: number): number {
  if (!scene || !visible) return -1;
  const leaf = scene.leafTarget.get(i);
  if (leaf !== undefined) return leaf;
  const item = visible.nodeItem[i] as number;
  return item >= 0 ? (scene.itemTarget[item] as number) : -1;
}
