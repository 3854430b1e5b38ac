// Which module groups of a big graph are open, by module path (so the choice survives a new graph
// of the same model, as in live mode). UI-only state, never synced. Closing a group also closes
// what was open inside it, so it reopens as it first did; a fresh graph opens a lone top-level
// group by itself (a model wrapped in one module).

import { type Group, type GroupTree, ROOT_GROUP } from "./groups";

/** A lone group beside at most this many ungrouped nodes opens by itself… */
const INITIAL_LOOSE_NODES = 8;
/** …unless it would show more than this many entries (10,000 layers of an MLP stay one box). */
const INITIAL_MAX_ENTRIES = 300;

export class Expansion {
  private paths = new Set<string>();

  /** Start over for a new model: open lone groups from the top (`encoder` › `encoder.layers`). */
  reset(tree: GroupTree): void {
    this.paths = new Set();
    let g = ROOT_GROUP;
    for (;;) {
      const group = tree.groups[g] as Group;
      if (group.children.length !== 1 || group.nodes.length > INITIAL_LOOSE_NODES) break;
      const only = tree.groups[group.children[0] as number] as Group;
      if (only.children.length + only.nodes.length > INITIAL_MAX_ENTRIES) break;
      g = group.children[0] as number;
      this.paths.add((tree.groups[g] as Group).path);
    }
  }

  clear(): void {
    this.paths = new Set();
  }

  toggle(tree: GroupTree, g: number): void {
    const path = (tree.groups[g] as Group).path;
    if (!this.paths.has(path)) {
      this.paths.add(path);
      return;
    }
    for (const p of [...this.paths]) if (p === path || p.startsWith(`${path}.`)) this.paths.delete(p);
  }

  /** Open `groups`; says whether anything changed. */
  open(tree: GroupTree, groups: readonly number[]): boolean {
    let changed = false;
    for (const g of groups) {
      const path = (tree.groups[g] as Group).path;
      if (this.paths.has(path)) continue;
      this.paths.add(path);
      changed = true;
    }
    return changed;
  }

  /** The open groups of `tree`, as group indices. */
  of(tree: GroupTree): Set<number> {
    const out = new Set<number>();
    for (const p of this.paths) {
      const g = tree.byPath.get(p);
      if (g !== undefined) out.add(g);
    }
    return out;
  }
}
