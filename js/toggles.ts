// What-if toggles as plain data, no DOM: which toggle an input stands for (read from its data-*
// attributes), whether it shows checked / changed / disabled against the `pending` trait, and the
// new `pending` dict a change produces. The panel (toggles-panel.ts) and the inspector use the same
// functions, so the two always agree. Python validates what the view writes (widget.py).
//
// requires_grad accepts leaf names and module paths (a module's whole subtree); a name's nearest
// entry wins: `layer1.weight` over `layer1` over `""` (the root module), then the leaf's own flag.

import type { WireToggles } from "./wire";

export type ToggleKind = "requires-grad" | "freeze" | "no-grad" | "inference-mode" | "detach" | "apply";
/** The data-* attribute that names what an input toggles; null: the whole step (or `apply`). */
export type ToggleAttr = "leaf" | "module" | "variable" | "edge" | null;

export interface ToggleTarget {
  kind: ToggleKind;
  attr: ToggleAttr;
  name: string | null;
}

/** What the checkboxes are checked against: the pending toggles and the leaves as they are now. */
export interface ToggleState {
  pending: WireToggles;
  /** current requires_grad of every leaf (and leaf variable) the view can toggle */
  base: ReadonlyMap<string, boolean>;
  modules: ReadonlySet<string>;
  variables: ReadonlySet<string>;
  /** can detach name node ids (controls.detach_nodes): `data-edge` boxes cut the edges into a node */
  detachNodes?: boolean;
  /** the toggles of the run shown (null: none): the re-run button counts the changes from them */
  shown?: WireToggles | null;
}

const KINDS: readonly string[] = ["requires-grad", "freeze", "no-grad", "inference-mode", "detach", "apply"];

/** The reason a leaf of `dtype` gets no requires_grad box: torch refuses it for any other dtype. */
export const NO_GRAD_DTYPE = "only floating-point and complex tensors can require gradients";

/** Can a tensor of `dtype` (a wire dtype: "float32", "bfloat16", "complex64", "int64") require grad? */
export function canRequireGrad(dtype: string): boolean {
  return /^(b?float|complex)\d/.test(dtype);
}

export function defaultToggles(): WireToggles {
  return { requires_grad: {}, no_grad: false, inference_mode: false, detach: [], apply: false };
}

function own(rec: Readonly<Record<string, boolean>>, key: string): boolean {
  return Object.hasOwn(rec, key);
}

/** Which toggle `el` stands for, from its data-toggle / data-leaf / data-module / data-variable. */
export function readTarget(el: Element): ToggleTarget | null {
  const kind = el.getAttribute("data-toggle") ?? el.getAttribute("data-scope-toggle");
  if (kind === null || !KINDS.includes(kind)) return null;
  for (const attr of ["leaf", "module", "variable", "edge"] as const) {
    const name = el.getAttribute(`data-${attr}`);
    if (name !== null) return { kind: kind as ToggleKind, attr, name };
  }
  if (kind === "requires-grad" || kind === "freeze" || kind === "detach") return null;
  return { kind: kind as ToggleKind, attr: null, name: null };
}

/** The requires_grad entry of the nearest enclosing module of `name`, if any. */
function inherited(state: ToggleState, name: string): boolean | undefined {
  const rg = state.pending.requires_grad;
  let path = name;
  while (path !== "") {
    const cut = path.lastIndexOf(".");
    path = cut < 0 ? "" : path.slice(0, cut);
    if (state.modules.has(path) && own(rg, path)) return rg[path];
  }
  return undefined;
}

/** What requires_grad of `name` would be without its own entry. */
function fallback(state: ToggleState, name: string): boolean {
  return inherited(state, name) ?? state.base.get(name) ?? true;
}

/** requires_grad of leaf `name` in the next re-run. */
export function effectiveRequiresGrad(state: ToggleState, name: string): boolean {
  const rg = state.pending.requires_grad;
  return own(rg, name) ? (rg[name] as boolean) : fallback(state, name);
}

function scopeHas(scope: boolean | string[], name: string | null): boolean {
  return name === null ? scope === true : scope === true || (Array.isArray(scope) && scope.includes(name));
}

function scopeOf(p: WireToggles, kind: ToggleKind): boolean | string[] {
  return kind === "no-grad" ? p.no_grad : p.inference_mode;
}

export function isChecked(state: ToggleState, t: ToggleTarget): boolean {
  const p = state.pending;
  switch (t.kind) {
    case "requires-grad":
      return effectiveRequiresGrad(state, t.name ?? "");
    case "freeze": {
      const name = t.name ?? "";
      return (own(p.requires_grad, name) ? p.requires_grad[name] : inherited(state, name)) === false;
    }
    case "no-grad":
    case "inference-mode":
      return scopeHas(scopeOf(p, t.kind), t.name);
    case "detach":
      return p.detach.includes(t.name ?? "");
    case "apply":
      return p.apply;
  }
}

/** Does this input show a change the next re-run will make? (Marked as pending in the view.) */
export function isChanged(state: ToggleState, t: ToggleTarget): boolean {
  const p = state.pending;
  switch (t.kind) {
    case "requires-grad":
      return effectiveRequiresGrad(state, t.name ?? "") !== (state.base.get(t.name ?? "") ?? true);
    case "freeze":
      return own(p.requires_grad, t.name ?? "");
    case "no-grad":
    case "inference-mode": {
      const scope = scopeOf(p, t.kind);
      return t.name === null ? scope === true : Array.isArray(scope) && scope.includes(t.name);
    }
    case "detach":
    case "apply":
      return isChecked(state, t);
  }
}

/** A module-scoped no_grad / inference_mode box while the whole step is already under it. */
export function isDisabled(state: ToggleState, t: ToggleTarget): boolean {
  return (
    (t.kind === "no-grad" || t.kind === "inference-mode") && t.name !== null && scopeOf(state.pending, t.kind) === true
  );
}

function depth(path: string): number {
  return path === "" ? 0 : path.split(".").length;
}

/**
 * requires_grad with `name` set to `value`, or its own entry dropped (undefined). Entries are kept
 * outer first (the root module, then by path depth; ties in the order set), so that applying them
 * in order, as Python's re-run does, also lets the nearest entry win.
 */
function withEntry(rg: Record<string, boolean>, name: string, value: boolean | undefined): Record<string, boolean> {
  const rest = Object.entries(rg).filter(([k]) => k !== name);
  const entries: [string, boolean][] = value === undefined ? rest : [...rest, [name, value]];
  entries.sort(([a], [b]) => depth(a) - depth(b));
  // Object.fromEntries, not rg[name] = value: a name such as "__proto__" must stay a plain key.
  return Object.fromEntries(entries);
}

function toggled(list: readonly string[], name: string, on: boolean): string[] {
  const rest = list.filter((x) => x !== name);
  return on ? [...rest, name] : rest;
}

/** The pending toggles after the user set input `t` to `checked` (a new object; `state` is untouched). */
export function withToggle(state: ToggleState, t: ToggleTarget, checked: boolean): WireToggles {
  const p = state.pending;
  const next: WireToggles = { ...p, requires_grad: { ...p.requires_grad }, detach: [...p.detach] };
  const name = t.name ?? "";
  switch (t.kind) {
    case "requires-grad":
      next.requires_grad = withEntry(p.requires_grad, name, checked === fallback(state, name) ? undefined : checked);
      break;
    case "freeze": {
      // Unfreezing drops the entry (leave the module as it is) unless a frozen parent needs overriding.
      const parentFrozen = inherited(state, name) === false;
      const value = checked ? (parentFrozen ? undefined : false) : parentFrozen ? true : undefined;
      next.requires_grad = withEntry(p.requires_grad, name, value);
      break;
    }
    case "no-grad":
    case "inference-mode": {
      const key = t.kind === "no-grad" ? "no_grad" : "inference_mode";
      const scope = p[key];
      if (t.name === null) next[key] = checked;
      else if (scope !== true) {
        const list = toggled(Array.isArray(scope) ? scope : [], t.name, checked);
        next[key] = list.length > 0 ? list : false;
      }
      break;
    }
    case "detach":
      next.detach = toggled(p.detach, name, checked);
      break;
    case "apply":
      next.apply = checked;
      break;
  }
  return next;
}

function scopeSet(scope: boolean | string[]): Set<string> {
  return new Set(scope === true ? ["\u0000whole step"] : Array.isArray(scope) ? scope : []);
}

function differences(a: Iterable<string>, b: Iterable<string>): number {
  const left = new Set(a);
  const right = new Set(b);
  let n = 0;
  for (const x of left) if (!right.has(x)) n++;
  for (const x of right) if (!left.has(x)) n++;
  return n;
}

/**
 * How many changes a re-run with `p` makes to the run `shown` ran with (null: a run without
 * toggles). Python leaves `pending` at the toggles of the run it just made, so after a re-run this
 * is 0 until the user changes something. `apply` is how, not what: not counted.
 */
export function changeCount(p: WireToggles, shown: WireToggles | null = null): number {
  const s = shown ?? defaultToggles();
  const value = (rec: Readonly<Record<string, boolean>>, k: string) => (own(rec, k) ? rec[k] : undefined);
  let n = 0;
  for (const k of new Set([...Object.keys(p.requires_grad), ...Object.keys(s.requires_grad)]))
    if (value(p.requires_grad, k) !== value(s.requires_grad, k)) n++;
  n += differences(scopeSet(p.no_grad), scopeSet(s.no_grad));
  n += differences(scopeSet(p.inference_mode), scopeSet(s.inference_mode));
  return n + differences(p.detach, s.detach);
}

/** A one-line description, worded like Python's Toggles.label: `w.requires_grad=False; no_grad(layer2)`. */
export function describeToggles(p: WireToggles): string {
  const parts = Object.entries(p.requires_grad).map(([k, v]) => `${k}.requires_grad=${v ? "True" : "False"}`);
  for (const [kind, scope] of [
    ["no_grad", p.no_grad],
    ["inference_mode", p.inference_mode],
  ] as const) {
    if (scope === true) parts.push(`whole step under ${kind}`);
    else if (Array.isArray(scope) && scope.length > 0) parts.push(`${kind}(${scope.join(", ")})`);
  }
  if (p.detach.length > 0) parts.push(`detach(${p.detach.join(", ")})`);
  return parts.join("; ") || "no toggles";
}
