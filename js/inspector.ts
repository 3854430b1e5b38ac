// The inspector panel ([data-gradsight="inspector"], DESIGN §6): everything known about the
// selected node. show() builds it at once from the wire graph (inspector-sections.ts); the inspect
// reply from Python then fills in full statistics, histograms and values previews
// (applyInspection), with the request's state on the panel as [data-inspect-status], and for a leaf
// without a gradient the reply's `why`. A big graph's binary skeleton has no node details: its
// panel starts with identity and edges ([data-detail="pending"]) and the reply's `detail` (the
// whole node) fills in the rest. What-if checkboxes (inspector-whatif.ts) mirror the
// pending toggles. The panel owns the listeners for everything inside it (edge links, slice
// inputs, what-if boxes, preview hover and keys).

import { h, setText } from "./dom";
import { findEntry, placeHistory, placeTensor } from "./inspect-place";
import { gradSection, headerSection, hint, leafSection, savedSection, section } from "./inspector-sections";
import { leafToggle, whatIfSection, whySection } from "./inspector-whatif";
import { displayName, type NonFinite } from "./node-label";
import { PreviewView } from "./preview";
import { richTensorView } from "./tensor-view";
import { isToggleInput, syncToggleInputs } from "./toggle-inputs";
import { readTarget, type ToggleState, type ToggleTarget } from "./toggles";
import {
  type PreviewValues,
  previewValues,
  type WireGraph,
  type WireInspection,
  type WireNode,
  type WirePreview,
  type WireWhy,
} from "./wire";

export interface InspectorEvents {
  /** An edge entry (or a "breaks at" link) was clicked: select that node. */
  select(id: string): void;
  /** A slice input changed: show tensor `key` at leading-dim `index`. */
  values(key: string, index: number[]): void;
  /** A what-if checkbox changed. */
  toggle(target: ToggleTarget, checked: boolean): void;
  /** The pending toggles, for the checkboxes (null: this debugger cannot re-run). */
  whatIf(): ToggleState | null;
}

export type InspectStatus = "loading" | "done" | "error";

const EMPTY_HINT =
  "Click a node (or focus it and press Enter) to see what autograd saved for it and the gradients that flowed through it.";
const LOADING_TEXT = "loading statistics, histograms and values from Python…";
const DETAIL_TEXT = "This big graph came without node details: saved values and gradients load from Python…";

/** What to give back after the same node is shown again (a live update): scroll and focus. */
interface Memo {
  scroll: number;
  key: string | null;
  control: string | null;
}

export class Inspector {
  readonly el: HTMLElement;
  private byId = new Map<string, WireNode>();
  private parents = new Map<string, string[]>();
  private graph: WireGraph | null = null;
  private statusLine: HTMLElement | null = null;
  private previews = new Map<string, PreviewView>();
  private memo: Memo | null = null;
  /** The node shown is a skeleton's light node: the sections wait for the reply's `detail`. */
  private light = false;
  private readonly listeners: [string, (e: Event) => void][] = [
    ["click", (e) => this.onClick(e)],
    ["change", (e) => this.onChange(e)],
    ["mousemove", (e) => this.previewOf(e.target)?.pointAt((e as MouseEvent).clientX, (e as MouseEvent).clientY)],
    ["mouseout", (e) => this.previewOf(e.target)?.leave()],
    ["keydown", (e) => this.onKey(e as KeyboardEvent)],
  ];

  constructor(private readonly events: InspectorEvents) {
    this.el = h("aside", { class: "gs-inspector", "data-gradsight": "inspector", "aria-label": "node inspector" });
    for (const [type, fn] of this.listeners) this.el.addEventListener(type, fn);
    this.show(null, null);
  }

  /** The node shown, or null. */
  get node(): string | null {
    return this.el.getAttribute("data-node");
  }

  /** Show node `id` of `graph`; a hint when nothing (or an id the graph lacks) is selected. */
  show(graph: WireGraph | null, id: string | null): void {
    if (graph !== this.graph) this.index(graph);
    const node = id === null ? undefined : this.byId.get(id);
    this.memo = node && this.node === node.id ? this.remember() : null;
    this.previews = new Map();
    this.statusLine = null;
    this.el.removeAttribute("data-inspect-status");
    if (!node) {
      const text = id === null || graph === null ? EMPTY_HINT : `Node ${id} is not in the current graph.`;
      this.el.replaceChildren(h("p", { class: "gs-hint" }, text));
      this.el.removeAttribute("data-node");
      return;
    }
    this.light = (graph?.skeleton ?? null) !== null;
    this.build(node);
  }

  /** The panel for `node`: everything for a full node; identity and edges for a light one. */
  private build(node: WireNode): void {
    this.el.setAttribute("data-node", node.id);
    this.statusLine = h("p", { class: "gs-inspect-status", role: "status", hidden: true });
    this.el.replaceChildren(headerSection(node), this.statusLine);
    if (this.light) {
      this.el.append(h("p", { class: "gs-hint", "data-detail": "pending" }, DETAIL_TEXT), this.edgesSection(node));
      return;
    }
    const state = this.events.whatIf();
    const whatIf = whatIfSection(node, state);
    if (whatIf) this.el.append(whatIf);
    if (node.leaf) {
      const leaf = leafSection(node.leaf);
      const toggle = leafToggle(node, state);
      if (toggle) leaf.querySelector(":scope > h4")?.after(toggle);
      this.el.append(leaf);
    }
    this.el.append(
      this.edgesSection(node),
      savedSection(node),
      gradSection("grad-in", node.grad_in),
      gradSection("grad-out", node.grad_out, node.leaf != null),
    );
    if (state) syncToggleInputs(this.el, state);
    if (this.memo) this.el.scrollTop = this.memo.scroll;
  }

  /** The pending toggles changed: update the what-if checkboxes in place (null: none can be set now). */
  syncToggles(state: ToggleState | null): void {
    if (state) syncToggleInputs(this.el, state);
    else for (const input of this.el.querySelectorAll<HTMLInputElement>("input[type=checkbox]")) input.disabled = true;
  }

  /** The state of the inspect request for the node shown: on the panel and on the status line. */
  /** Did the last request for the shown node fail (selecting it again retries)? */
  failed(): boolean {
    return this.el.getAttribute("data-inspect-status") === "error";
  }

  setStatus(status: InspectStatus, text = ""): void {
    const line = this.statusLine;
    if (!line) return;
    this.el.setAttribute("data-inspect-status", status);
    line.setAttribute("data-inspect-status", status);
    line.classList.toggle("gs-inspect-error", status === "error");
    setText(line, status === "loading" ? LOADING_TEXT : status === "error" ? text : "");
    line.hidden = status === "done";
  }

  /** Fill the skeleton with Python's answer; says whether (and how many) NaN / Inf values it reports. */
  applyInspection(insp: WireInspection, buffers: readonly DataView[]): NonFinite {
    const found: NonFinite = { present: false, count: 0 };
    if (insp.node !== this.node) return found;
    if (this.light && insp.detail && insp.detail.id === insp.node) {
      // The skeleton's node was light: now the whole node is known.
      const status = this.el.getAttribute("data-inspect-status");
      this.light = false;
      this.build(insp.detail);
      if (status === "loading") this.setStatus("loading");
    }
    for (const tv of insp.tensors) {
      let preview: PreviewView | null = null;
      if (tv.preview) {
        preview = new PreviewView(tv.preview, previewValues(tv.preview, buffers));
        this.previews.set(tv.key, preview);
      }
      placeTensor(this.el, tv, richTensorView(tv, preview));
      const h = tv.histogram;
      const counted = (tv.summary.nan_count ?? 0) + (tv.summary.inf_count ?? 0);
      found.count += Math.max(counted, h ? h.nan + h.posinf + h.neginf : 0);
      found.present ||= tv.summary.nonfinite || found.count > 0;
    }
    if (insp.history.length > 0) placeHistory(this.el, insp.history);
    if (insp.why) this.placeWhy(insp.why);
    this.restore();
    return found;
  }

  updatePreview(key: string, preview: WirePreview, values: PreviewValues): void {
    this.previews.get(key)?.update(preview, values);
  }

  setPreviewStatus(key: string, status: "loading" | "error", text = ""): void {
    this.previews.get(key)?.setStatus(status, text);
  }

  /** Show `index` in the slice inputs of `key` (before its values arrive). */
  setSliceIndex(key: string, index: readonly number[]): void {
    this.previews.get(key)?.setSliceIndex(index);
  }

  destroy(): void {
    for (const [type, fn] of this.listeners) this.el.removeEventListener(type, fn);
  }

  private remember(): Memo {
    const active = document.activeElement;
    const inside = active instanceof HTMLElement && this.el.contains(active) ? active : null;
    const entry = inside?.closest("[data-tensor-key]");
    const dim = inside?.getAttribute("data-slice-dim");
    const control = dim != null ? `[data-slice-dim="${dim}"]` : inside?.matches("canvas") ? "canvas" : null;
    return { scroll: this.el.scrollTop, key: entry?.getAttribute("data-tensor-key") ?? null, control };
  }

  /** A live update rebuilt the panel: give back the scroll position and the focused control. */
  private restore(): void {
    const memo = this.memo;
    this.memo = null;
    if (!memo) return;
    this.el.scrollTop = memo.scroll;
    if (memo.key === null || memo.control === null) return;
    findEntry(this.el, memo.key)?.querySelector<HTMLElement>(memo.control)?.focus({ preventScroll: true });
  }

  private previewOf(target: EventTarget | null): PreviewView | undefined {
    if (!(target instanceof Element) || !target.matches("canvas[data-preview]")) return undefined;
    const key = target.closest("[data-tensor-key]")?.getAttribute("data-tensor-key");
    return key == null ? undefined : this.previews.get(key);
  }

  private onClick(e: Event): void {
    const target = e.target instanceof Element ? e.target.closest("button[data-goto-node]") : null;
    const id = target?.getAttribute("data-goto-node");
    if (id) this.events.select(id);
  }

  /** The why section goes right under the header, where it is seen first. */
  private placeWhy(why: WireWhy): void {
    this.el.querySelector(':scope > [data-section="why"]')?.remove();
    const created = whySection(why, (id) => {
      const n = this.byId.get(id);
      return n ? displayName(n) : null;
    });
    if (this.statusLine) this.statusLine.after(created);
    else this.el.append(created);
  }

  private onChange(e: Event): void {
    const target = readToggle(e.target);
    if (target) {
      this.events.toggle(target.t, target.checked);
      return;
    }
    if (!(e.target instanceof HTMLInputElement) || !e.target.hasAttribute("data-slice-dim")) return;
    const key = e.target.closest("[data-tensor-key]")?.getAttribute("data-tensor-key");
    const preview = key == null ? undefined : this.previews.get(key);
    if (key == null || !preview) return;
    this.events.values(key, preview.sliceIndex());
  }

  private onKey(e: KeyboardEvent): void {
    const preview = this.previewOf(e.target);
    if (preview?.key(e)) e.preventDefault();
  }

  private index(graph: WireGraph | null): void {
    this.graph = graph;
    this.byId = new Map((graph?.nodes ?? []).map((n) => [n.id, n]));
    this.parents = new Map();
    for (const n of graph?.nodes ?? []) {
      for (const [target] of n.next) {
        if (target === null) continue;
        const list = this.parents.get(target) ?? [];
        if (!list.includes(n.id)) list.push(n.id);
        this.parents.set(target, list);
      }
    }
  }

  private nodeButton(id: string): HTMLButtonElement {
    const node = this.byId.get(id);
    // data-goto-node, not data-node-id: DESIGN §6's [data-node-id] must find the node itself, once
    return h("button", { type: "button", class: "gs-link", "data-goto-node": id }, node ? displayName(node) : id);
  }

  private edgesSection(node: WireNode): HTMLElement {
    const next = h("ol", { class: "gs-edge-list", start: 0 });
    for (const [target, nr] of node.next) {
      next.append(
        target === null
          ? h("li", { class: "gs-none", "data-edge-none": "true" }, "None (input needs no gradient)")
          : h("li", {}, this.nodeButton(target), h("span", { class: "gs-muted" }, ` input_nr ${nr}`)),
      );
    }
    const parents = this.parents.get(node.id) ?? [];
    return section(
      "edges",
      "Edges",
      h("h5", {}, "next_functions (toward the inputs)"),
      node.next.length > 0 ? next : hint("none: gradient stops here"),
      h("h5", {}, "used by (toward the root)"),
      parents.length > 0
        ? h("ul", { class: "gs-edge-list" }, ...parents.map((p) => h("li", {}, this.nodeButton(p))))
        : hint("none: a root"),
    );
  }
}

function readToggle(target: EventTarget | null): { t: ToggleTarget; checked: boolean } | null {
  if (!isToggleInput(target)) return null;
  const t = readTarget(target);
  return t ? { t, checked: target.checked } : null;
}
