// Keyboard movement between nodes: arrow keys step to a connected node (toward the leaves or the
// roots) or to the neighbour in the same layer, following what the arrows mean on screen for the
// current direction (in TB the leaves are below, in LR they are to the right). Past a layer's end
// the sideways keys go on to the next (or previous) layer, so that from any node the sideways keys
// alone reach every node: the graph is one Tab stop (render.ts), and no node may be out of reach.

import type { Direction, Layout } from "./layout";
import type { WireGraph } from "./wire";

export type Step = "child" | "parent" | "before" | "after";

const KEYS: Record<Direction, Record<string, Step>> = {
  TB: { ArrowDown: "child", ArrowUp: "parent", ArrowLeft: "before", ArrowRight: "after" },
  BT: { ArrowUp: "child", ArrowDown: "parent", ArrowLeft: "before", ArrowRight: "after" },
  LR: { ArrowRight: "child", ArrowLeft: "parent", ArrowUp: "before", ArrowDown: "after" },
  RL: { ArrowLeft: "child", ArrowRight: "parent", ArrowUp: "before", ArrowDown: "after" },
};

export function keyToStep(key: string, direction: Direction): Step | null {
  return KEYS[direction][key] ?? null;
}

/** Who is next to whom, built once per layout. */
export class Neighbours {
  private readonly children = new Map<string, string[]>();
  private readonly parents = new Map<string, string[]>();
  /** Every node in reading order: layer by layer, left to right inside a layer. */
  private readonly order: string[] = [];
  private readonly place = new Map<string, number>();

  constructor(graph: WireGraph, layout: Layout) {
    for (const node of graph.nodes) {
      const targets: string[] = [];
      for (const [target] of node.next) {
        if (target === null || targets.includes(target)) continue;
        targets.push(target);
        const ps = this.parents.get(target);
        if (ps) ps.push(node.id);
        else this.parents.set(target, [node.id]);
      }
      this.children.set(node.id, targets);
    }
    const layers: { id: string; order: number }[][] = [];
    for (const p of layout.nodes) {
      const layer = layers[p.layer] ?? [];
      layers[p.layer] = layer;
      layer.push({ id: p.id, order: p.order });
    }
    for (const layer of layers) {
      if (!layer) continue;
      for (const { id } of layer.sort((a, b) => a.order - b.order)) {
        this.place.set(id, this.order.length);
        this.order.push(id);
      }
    }
  }

  /** The node the graph's Tab stop starts on: the first in reading order (a root), or null. */
  first(): string | null {
    return this.order[0] ?? null;
  }

  /** Where `step` leads from `id`, or null when there is nothing that way. */
  step(id: string, step: Step): string | null {
    if (step === "child") return this.children.get(id)?.[0] ?? null;
    if (step === "parent") return this.parents.get(id)?.[0] ?? null;
    const at = this.place.get(id);
    if (at === undefined) return null;
    return this.order[at + (step === "after" ? 1 : -1)] ?? null;
  }
}
