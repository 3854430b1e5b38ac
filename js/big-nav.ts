// Moving around the big-graph canvas by keyboard, and what each target is in words: the item an
// arrow key leads to (toward the leaves or the roots along a visible edge, into or out of a frame,
// or to the neighbour in the same layer), the box to keep on screen, and tooltip text. Pure
// functions of the scene and the visible graph.

import { groupBadges } from "./big-label";
import { formatCount, formatNumber } from "./format";
import { type GraphIndex, gradNorm, kindName, nodeDisplayName } from "./graph-index";
import type { Group, GroupTree } from "./groups";
import type { Step } from "./navigate";
import type { Box } from "./panzoom";
import { type Scene, T_GROUP, T_HEADER, T_LEAF, T_NODE } from "./scene";
import type { Item, Visible } from "./visible";

export interface NavContext {
  ix: GraphIndex;
  tree: GroupTree;
  visible: Visible;
  scene: Scene;
}

/** Who points at whom among the visible items, built once per scene. */
export class SceneNav {
  private readonly out = new Map<number, number[]>();
  private readonly in = new Map<number, number[]>();

  constructor(private readonly c: NavContext) {
    for (const e of c.visible.edges) {
      push(this.out, e.from, e.to);
      push(this.in, e.to, e.from);
    }
  }

  /** The item a target stands for (a folded leaf: the node it is drawn beside). */
  itemOf(target: number): number {
    const { scene, visible } = this.c;
    const ref = scene.ref[target] as number;
    return scene.kind[target] === T_LEAF ? (visible.nodeItem[ref] as number) : ref;
  }

  /** The target an arrow key leads to from `target`, or -1. */
  step(target: number, step: Step): number {
    const { scene, visible } = this.c;
    const item = this.itemOf(target);
    const it = visible.items[item] as Item;
    let to = -1;
    if (step === "child") {
      to = scene.kind[target] === T_HEADER ? this.firstInside(item) : (this.out.get(item)?.[0] ?? -1);
    } else if (step === "parent") {
      to = this.in.get(item)?.[0] ?? visible.levels[it.level]?.frame ?? -1;
    } else {
      const want = (scene.order[item] as number) + (step === "after" ? 1 : -1);
      for (const other of visible.levels[it.level]?.items ?? []) {
        if (scene.layer[other] === scene.layer[item] && scene.order[other] === want) to = other;
      }
    }
    return to >= 0 ? (scene.itemTarget[to] as number) : -1;
  }

  private firstInside(frame: number): number {
    const level = this.c.visible.levels.find((l) => l.frame === frame);
    let best = -1;
    for (const it of level?.items ?? []) {
      const s = this.c.scene;
      if (best < 0 || (s.layer[it] as number) < (s.layer[best] as number)) best = it;
    }
    return best;
  }
}

function push(map: Map<number, number[]>, key: number, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

export function targetBox(scene: Scene, target: number): Box {
  const g = scene.grid;
  return {
    x: g.x[target] as number,
    y: g.y[target] as number,
    width: g.w[target] as number,
    height: g.h[target] as number,
  };
}

/** Tooltip text of a target. */
export function describeTarget(c: NavContext, target: number): string {
  const { scene, visible, ix, tree } = c;
  const kind = scene.kind[target];
  const ref = scene.ref[target] as number;
  if (kind === T_NODE || kind === T_LEAF) {
    const i = kind === T_LEAF ? ref : (visible.items[ref] as Item).ref;
    const norm = gradNorm(ix, i);
    const parts = [
      nodeDisplayName(ix, i),
      kindName(ix, i) === "op" ? "operation" : kindName(ix, i),
      ix.leaves[i] ? (ix.names[i] as string) : null,
      ix.modules[i] ? `module ${ix.modules[i]}` : null,
      ix.shapes[i] ? `shape ${ix.shapes[i]}` : null,
      norm === null ? null : `grad norm ${formatNumber(norm)}`,
    ];
    return `${parts.filter((p) => p).join(", ")}\nid ${ix.ids[i]}`;
  }
  const group = tree.groups[(visible.items[ref] as Item).ref] as Group;
  const badges = groupBadges(group).join(", ");
  const action = kind === T_GROUP ? "click to expand" : "click to collapse";
  return `${group.path}: ${formatCount(group.total)} nodes${badges ? `, ${badges}` : ""} (${action})`;
}
