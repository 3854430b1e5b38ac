// The outline ([data-gradsight="outline"]): the module groups of a big graph as a collapsible list,
// the DOM side of the canvas (DESIGN §6). Group entries ([data-group="<module path>"], with
// aria-expanded) toggle the same expansion state as the canvas; the nodes of expanded groups are
// entries with data-node-id and data-node-name whose click selects the node like a canvas click.
// A group lists its first OUTLINE_PAGE entries (child groups, then nodes) and a "show more"
// button, so no node is out of reach and no list builds 50,000 buttons at once. Arrow keys move between entries; Right / Left open
// and close a group. The outline is one Tab stop (a roving tabindex, as in the WAI-ARIA tree
// pattern): the entry last moved to or clicked, else the selected node's, else the first; every
// other entry has tabindex -1.

import { groupBadges, groupTitle, shownName } from "./big-label";
import { h } from "./dom";
import { formatCount } from "./format";
import { type GraphIndex, kindName } from "./graph-index";
import { type Group, type GroupTree, ROOT_GROUP } from "./groups";
import { ownsKeys, plainKey } from "./keys";

export interface OutlineEvents {
  toggle(group: number): void;
  pick(node: number): void;
}

/** Entries (child groups and nodes) listed per group before a "show more" button. */
export const OUTLINE_PAGE = 2500;

export class Outline {
  readonly el: HTMLElement;
  private ix: GraphIndex | null = null;
  private tree: GroupTree | null = null;
  private expanded: ReadonlySet<number> = new Set();
  private selected = -1;
  private readonly shown = new Map<number, number>();
  /** Selector of the entry that is the outline's Tab stop (null: the selected node's, or the first). */
  private stop: string | null = null;
  private readonly listeners: [string, (e: Event) => void][] = [
    ["click", (e) => this.onClick(e)],
    ["keydown", (e) => this.onKey(e as KeyboardEvent)],
  ];

  constructor(private readonly events: OutlineEvents) {
    this.el = h("nav", { class: "gs-outline", "data-gradsight": "outline", "aria-label": "graph outline by module" });
    for (const [type, fn] of this.listeners) this.el.addEventListener(type, fn);
  }

  /** Rebuild for a graph and expansion state; keyboard focus stays on the same entry. */
  render(ix: GraphIndex | null, tree: GroupTree | null, expanded: ReadonlySet<number>, selected: number): void {
    if (ix !== this.ix) this.shown.clear();
    this.ix = ix;
    this.tree = tree;
    this.expanded = expanded;
    this.selected = selected;
    const active = document.activeElement;
    const focus = active instanceof HTMLElement && this.el.contains(active) ? keyOf(active) : null;
    if (!ix || !tree) {
      this.el.replaceChildren();
      return;
    }
    this.el.replaceChildren(this.list(ROOT_GROUP));
    if (focus) this.stop = focus;
    this.placeStop();
    if (focus) this.el.querySelector<HTMLElement>(focus)?.focus({ preventScroll: true });
  }

  /** Give tabindex 0 to the Tab stop's entry (or the selected node's, or the first) and -1 to the rest. */
  private placeStop(): void {
    const selected = this.selected >= 0 ? this.ix?.ids[this.selected] : undefined;
    const target =
      (this.stop === null ? null : this.el.querySelector<HTMLButtonElement>(this.stop)) ??
      (selected === undefined ? null : this.entry(selected)) ??
      this.el.querySelector<HTMLButtonElement>("button");
    for (const el of this.el.querySelectorAll<HTMLElement>('button[tabindex="0"]')) el.tabIndex = -1;
    if (target) target.tabIndex = 0;
  }

  /** Make `entry` the Tab stop. */
  private moveStop(entry: HTMLElement): void {
    this.stop = keyOf(entry);
    this.placeStop();
  }

  /** Mark the selected node's entry (when listed) and scroll it into view. */
  setSelected(node: number): void {
    this.selected = node;
    for (const el of this.el.querySelectorAll('[aria-current="true"]')) el.setAttribute("aria-current", "false");
    const id = node >= 0 ? this.ix?.ids[node] : undefined;
    if (id === undefined) return;
    const entry = this.entry(id);
    entry?.setAttribute("aria-current", "true");
    if (!entry) return;
    this.reveal(entry);
    this.moveStop(entry);
  }

  /** Scroll the outline itself (not the notebook: scrollIntoView scrolls every ancestor, and a
   * live step re-selects on every update) so that `entry` is visible. */
  private reveal(entry: HTMLElement): void {
    const box = this.el;
    const top = entry.offsetTop - box.offsetTop;
    if (top < box.scrollTop) box.scrollTop = top;
    else if (top + entry.offsetHeight > box.scrollTop + box.clientHeight)
      box.scrollTop = top + entry.offsetHeight - box.clientHeight;
  }

  destroy(): void {
    for (const [type, fn] of this.listeners) this.el.removeEventListener(type, fn);
  }

  private entry(id: string): HTMLElement | null {
    for (const el of this.el.querySelectorAll<HTMLElement>("[data-node-id]")) {
      if (el.getAttribute("data-node-id") === id) return el;
    }
    return null;
  }

  /** The entries of group g: its child groups, then its nodes, a page at a time. */
  private list(g: number): HTMLUListElement {
    const tree = this.tree as GroupTree;
    const group = tree.groups[g] as Group;
    const ul = h("ul", { class: "gs-ol-list", role: g === ROOT_GROUP ? null : "group" });
    const total = group.children.length + group.nodes.length;
    const limit = Math.min(total, this.shown.get(g) ?? OUTLINE_PAGE);
    const entries = document.createDocumentFragment();
    for (let k = 0; k < limit; k++) {
      const child = group.children[k];
      entries.append(
        child === undefined ? this.nodeEntry(group.nodes[k - group.children.length] as number) : this.groupEntry(child),
      );
    }
    ul.append(entries);
    if (total > limit) {
      const more = Math.min(OUTLINE_PAGE, total - limit);
      const text = `show ${formatCount(more)} more of ${formatCount(total - limit)}`;
      ul.append(
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "gs-ol-more", "data-more-of": group.path, tabindex: -1, ...ownsKeys("arrows") },
            text,
          ),
        ),
      );
    }
    return ul;
  }

  private nodeEntry(i: number): HTMLLIElement {
    const tree = this.tree as GroupTree;
    const ix = this.ix as GraphIndex;
    const detail = [ix.variables[i], ix.shapes[i]].filter((x) => x).join(" ");
    const placed = tree.placed[i] === 1;
    const button = h(
      "button",
      {
        type: "button",
        class: `gs-ol-node gs-ol-kind-${kindName(ix, i)}`,
        "data-node-id": ix.ids[i],
        "data-node-name": ix.names[i],
        "data-kind": kindName(ix, i),
        "aria-current": i === this.selected ? "true" : "false",
        "data-placed": placed ? "true" : null,
        title: placed ? `${ix.ids[i]} (no module recorded: shown with its neighbours')` : ix.ids[i],
        tabindex: -1,
        ...ownsKeys("arrows"),
      },
      h("bdi", { class: "gs-ol-name" }, shownName(ix, i, false)),
      detail ? h("bdi", { class: "gs-ol-meta" }, detail) : null,
    );
    return h("li", {}, button);
  }

  private groupEntry(g: number): HTMLLIElement {
    const tree = this.tree as GroupTree;
    const group = tree.groups[g] as Group;
    const open = this.expanded.has(g);
    const badges = groupBadges(group);
    const button = h(
      "button",
      {
        type: "button",
        class: "gs-ol-group",
        "data-group": group.path,
        "aria-expanded": open ? "true" : "false",
        "data-nonfinite": group.nonfinite > 0 ? "true" : null,
        "data-repeat": group.series >= 2 ? String(group.series) : null,
        title: group.path,
        tabindex: -1,
        ...ownsKeys("arrows"),
      },
      h("span", { class: "gs-ol-caret", "aria-hidden": "true" }, open ? "▾" : "▸"),
      h("bdi", { class: "gs-ol-name" }, groupTitle(group, tree.groups[group.parent])),
      h("span", { class: "gs-ol-count" }, formatCount(group.total)),
      badges.length > 0 ? h("span", { class: "gs-ol-badges" }, badges.join(" · ")) : null,
    );
    return h("li", {}, button, open ? this.list(g) : null);
  }

  private onClick(e: Event): void {
    const target = e.target instanceof Element ? e.target.closest("button") : null;
    if (!target || !this.tree || !this.ix) return;
    this.moveStop(target);
    const path = target.getAttribute("data-group");
    if (path !== null) {
      const g = this.tree.byPath.get(path);
      if (g !== undefined) this.events.toggle(g);
      return;
    }
    const more = target.getAttribute("data-more-of");
    if (more !== null) {
      const g = this.tree.byPath.get(more);
      if (g === undefined) return;
      this.shown.set(g, (this.shown.get(g) ?? OUTLINE_PAGE) + OUTLINE_PAGE);
      const li = target.closest("li");
      const list = li?.parentElement;
      list?.replaceWith(this.list(g));
      this.placeStop(); // the "show more" button is gone: the Tab stop falls back to the selected / first entry
      return;
    }
    const id = target.getAttribute("data-node-id");
    const i = id === null ? undefined : this.ix.indexOf.get(id);
    if (i !== undefined) this.events.pick(i);
  }

  private onKey(e: KeyboardEvent): void {
    const current = e.target instanceof HTMLButtonElement ? e.target : null;
    if (!current || !this.tree || !plainKey(e)) return;
    const buttons = [...this.el.querySelectorAll<HTMLButtonElement>("button")];
    const at = buttons.indexOf(current);
    const path = current.getAttribute("data-group");
    const g = path === null ? undefined : this.tree.byPath.get(path);
    let to: HTMLButtonElement | undefined;
    if (e.key === "ArrowDown") to = buttons[at + 1];
    else if (e.key === "ArrowUp") to = buttons[at - 1];
    else if (e.key === "ArrowRight" && g !== undefined && !this.expanded.has(g)) this.events.toggle(g);
    else if (e.key === "ArrowLeft" && g !== undefined && this.expanded.has(g)) this.events.toggle(g);
    else if (e.key === "ArrowLeft") {
      // To the group that holds this entry.
      to = current.closest("ul")?.closest("li")?.querySelector<HTMLButtonElement>(":scope > button") ?? undefined;
    } else return;
    e.preventDefault();
    if (!to) return;
    this.moveStop(to);
    to.focus();
  }
}

/** A selector for the outline entry `el` (stable across rebuilds), or null. */
function keyOf(el: HTMLElement): string | null {
  for (const attr of ["data-group", "data-node-id", "data-more-of"]) {
    const v = el.getAttribute(attr);
    if (v !== null) return `[${attr}="${cssString(v)}"]`;
  }
  return null;
}

/** ``v`` as the inside of a double-quoted CSS string: a quote and a backslash escaped, and control
 * characters (a newline in a ModuleDict key) as hex escapes, which a selector cannot hold raw. */
export function cssString(v: string): string {
  let out = "";
  for (const c of v) {
    const code = c.charCodeAt(0);
    if (c === '"' || c === "\\") out += `\\${c}`;
    else if (code < 0x20 || code === 0x7f) out += `\\${code.toString(16)} `;
    else out += c;
  }
  return out;
}
