// The wire contract, TypeScript side. Mirrors src/gradsight/schema.py (SCHEMA_VERSION 9).
// parseGraph() is the runtime guard: everything the view draws has passed through it, so a drift
// between the two sides fails loudly (and the golden snapshots in tests/golden fail the JS tests).
// Big graphs come as a binary skeleton, decoded by skeleton.ts.

import { lightNodes, parseSkeleton, type Skeleton } from "./skeleton";

export const SCHEMA_VERSION = 9;

export type NodeKind = "op" | "leaf" | "root" | "opaque";

export interface WireTensor {
  shape: number[];
  dtype: string;
  device: string;
  numel: number;
  min: number | null;
  max: number | null;
  mean: number | null;
  std: number | null;
  norm: number | null;
  nan_count: number | null;
  inf_count: number | null;
  layout: string;
  freed: boolean;
  note: string | null;
  /** NaN or Inf present (counted, or seen through a non-finite norm when values were not kept). */
  nonfinite: boolean;
}

export type WireValue =
  | ({ type: "tensor" } & WireTensor)
  | { type: "unavailable"; reason: string }
  | { type: "none" }
  | { type: "bool"; value: boolean }
  | { type: "int"; value: number | null; text: string }
  | { type: "float"; value: number | null; text: string }
  | { type: "str"; value: string }
  | { type: "tuple"; items: WireValue[] };

export interface WireOutput {
  shape: number[];
  dtype: string;
  device: string;
}

export interface WireLeaf {
  name: string | null;
  shape: number[];
  dtype: string;
  device: string;
  requires_grad: boolean;
  is_parameter: boolean;
  grad: WireTensor | null;
}

export type OpaqueKind = "compiled" | "checkpoint" | "custom" | "backward-hook";
export type RunMode = "tensor" | "cell" | "runnable" | "live";
export type RootGradient = "scalar" | "ones" | "grad_output";

/** What-if toggles (a run's, or the view's pending ones): see src/gradsight/toggles.py. */
export interface WireToggles {
  requires_grad: Record<string, boolean>;
  /** true: the whole step; a list: those modules only. */
  no_grad: boolean | string[];
  inference_mode: boolean | string[];
  /** module paths (their output is detached) or, in a %%gradsight cell, variable names */
  detach: string[];
  /** keep requires_grad changes on the user's tensors after the run */
  apply: boolean;
}

export type WhyReason =
  | "requires_grad_false"
  | "detach"
  | "no_grad"
  | "inference_mode"
  | "non_differentiable"
  | "data"
  | "not_on_path"
  | "unused"
  | "freed"
  | "zero"
  | "nonfinite"
  | "exploding"
  | "vanishing"
  | "backward_error"
  | "unknown";

/** Why a leaf's .grad is None (or zero), and where the path from the root breaks. */
export interface WireWhy {
  name: string;
  reason: WhyReason;
  message: string;
  where: string | null;
  source: string | null;
}

export interface WireControls {
  rerun: boolean;
  /** why this debugger cannot re-run, and what to do instead */
  note: string | null;
  leaves: { name: string; requires_grad: boolean; in_graph: boolean; dtype: string | null }[];
  modules: string[];
  variables: string[];
  /** can `detach` name node ids (runnable and live debuggers): cuts the edges into that node */
  detach_nodes: boolean;
}

export interface WireRun {
  mode: RunMode;
  step: number;
  root_gradient: RootGradient | null;
  loss: number | null;
  kept_bytes: number;
  budget_bytes: number;
  dropped: number;
  errors: string[];
  /** this run's number in the debugger's history */
  index: number;
  toggles: WireToggles | null;
}

export interface WireNode {
  id: string;
  name: string;
  kind: NodeKind;
  label: string;
  module: string | null;
  variable: string | null;
  source: string | null;
  next: [string | null, number][];
  outputs: WireOutput[];
  saved: { name: string; value: WireValue }[];
  grad_in: (WireTensor | null)[];
  grad_out: (WireTensor | null)[];
  leaf: WireLeaf | null;
  opaque_kind: OpaqueKind | null;
  /** Did backward run this node? null: no backward was observed. */
  executed: boolean | null;
  /** L2 norm of all gradients that flowed into the node (null: unknown or not finite). */
  grad_norm: number | null;
}

export interface WireGraph {
  schema_version: number;
  roots: string[];
  message: string | null;
  notes: string[];
  run: WireRun;
  /** leaves that got no gradient in this run, and why */
  missing: WireWhy[];
  controls: WireControls;
  /** Skeleton graphs: light nodes (no saved values, gradients or source: see `skeleton`). */
  nodes: WireNode[];
  /** Big graphs: the decoded binary skeleton; node details come with each inspect reply. */
  skeleton?: Skeleton | null;
}

/** The `diff` trait: what changed between two runs of the history. */
export interface WireDiff {
  before: number;
  after: number;
  added: string[];
  removed: { id: string; name: string; kind: string; module: string | null }[];
  gained_grad: string[];
  lost_grad: string[];
  loss: { before: number | null; after: number | null };
  grad_norms: { name: string; before: number | null; after: number | null }[];
  saved_bytes: { before: number; after: number };
}

/** One entry of the `history` trait (the debugger's last runs). */
export interface WireHistoryEntry {
  index: number;
  label: string;
  loss: number | null;
  nodes: number;
  error: string | null;
}

export class WireError extends Error {}

type Obj = Record<string, unknown>;

function fail(path: string, want: string, got: unknown): never {
  const shown = got === null ? "null" : Array.isArray(got) ? "array" : typeof got;
  throw new WireError(`wire: ${path} should be ${want}, got ${shown}`);
}

function obj(x: unknown, path: string): Obj {
  if (typeof x !== "object" || x === null || Array.isArray(x)) fail(path, "an object", x);
  return x as Obj;
}

function arr(x: unknown, path: string): unknown[] {
  if (!Array.isArray(x)) fail(path, "an array", x);
  return x;
}

function str(x: unknown, path: string): string {
  if (typeof x !== "string") fail(path, "a string", x);
  return x;
}

function optStr(x: unknown, path: string): string | null {
  return x === null ? null : str(x, path);
}

function num(x: unknown, path: string): number {
  if (typeof x !== "number") fail(path, "a number", x);
  return x;
}

function optNum(x: unknown, path: string): number | null {
  return x === null ? null : num(x, path);
}

// A Map, not an object literal: `"constructor" in {}` is true (the prototype's), and was read as a number.
const NON_FINITE = new Map<string, number>([
  ["nan", Number.NaN],
  ["inf", Number.POSITIVE_INFINITY],
  ["-inf", Number.NEGATIVE_INFINITY],
]);

/** A loss or gradient norm: a number, null, or (JSON has no NaN) "nan" / "inf" / "-inf". */
function optValue(x: unknown, path: string): number | null {
  const special = typeof x === "string" ? NON_FINITE.get(x) : undefined;
  return special !== undefined ? special : optNum(x, path);
}

function bool(x: unknown, path: string): boolean {
  if (typeof x !== "boolean") fail(path, "a boolean", x);
  return x;
}

function numbers(x: unknown, path: string): number[] {
  return arr(x, path).map((d, i) => num(d, `${path}[${i}]`));
}

const KINDS: readonly string[] = ["op", "leaf", "root", "opaque"];
const OPAQUE_KINDS: readonly string[] = ["compiled", "checkpoint", "custom", "backward-hook"];
const MODES: readonly string[] = ["tensor", "cell", "runnable", "live"];
const ROOT_GRADIENTS: readonly string[] = ["scalar", "ones", "grad_output"];

function oneOf<T extends string>(x: unknown, allowed: readonly string[], path: string): T {
  const v = str(x, path);
  if (!allowed.includes(v))
    throw new WireError(`wire: ${path} ${JSON.stringify(v)} is not one of ${allowed.join(", ")}`);
  return v as T;
}

function optBool(x: unknown, path: string): boolean | null {
  return x === null ? null : bool(x, path);
}

export function parseTensor(x: unknown, path: string): WireTensor {
  const o = obj(x, path);
  return {
    shape: numbers(o.shape, `${path}.shape`),
    dtype: str(o.dtype, `${path}.dtype`),
    device: str(o.device, `${path}.device`),
    numel: num(o.numel, `${path}.numel`),
    min: optNum(o.min, `${path}.min`),
    max: optNum(o.max, `${path}.max`),
    mean: optNum(o.mean, `${path}.mean`),
    std: optNum(o.std, `${path}.std`),
    norm: optNum(o.norm, `${path}.norm`),
    nan_count: optNum(o.nan_count, `${path}.nan_count`),
    inf_count: optNum(o.inf_count, `${path}.inf_count`),
    layout: str(o.layout, `${path}.layout`),
    freed: bool(o.freed, `${path}.freed`),
    note: optStr(o.note, `${path}.note`),
    nonfinite: bool(o.nonfinite, `${path}.nonfinite`),
  };
}

function optTensor(x: unknown, path: string): WireTensor | null {
  return x === null ? null : parseTensor(x, path);
}

export function parseValue(x: unknown, path: string): WireValue {
  const o = obj(x, path);
  const type = str(o.type, `${path}.type`);
  switch (type) {
    case "tensor":
      return { type, ...parseTensor(o, path) };
    case "unavailable":
      return { type, reason: str(o.reason, `${path}.reason`) };
    case "none":
      return { type };
    case "bool":
      return { type, value: bool(o.value, `${path}.value`) };
    case "int":
    case "float":
      return { type, value: optNum(o.value, `${path}.value`), text: str(o.text, `${path}.text`) };
    case "str":
      return { type, value: str(o.value, `${path}.value`) };
    case "tuple":
      return { type, items: arr(o.items, `${path}.items`).map((v, i) => parseValue(v, `${path}.items[${i}]`)) };
    default:
      throw new WireError(`wire: ${path}.type ${JSON.stringify(type)} is not a known saved-value type`);
  }
}

function parseLeaf(x: unknown, path: string): WireLeaf | null {
  if (x === null) return null;
  const o = obj(x, path);
  return {
    name: optStr(o.name, `${path}.name`),
    shape: numbers(o.shape, `${path}.shape`),
    dtype: str(o.dtype, `${path}.dtype`),
    device: str(o.device, `${path}.device`),
    requires_grad: bool(o.requires_grad, `${path}.requires_grad`),
    is_parameter: bool(o.is_parameter, `${path}.is_parameter`),
    grad: optTensor(o.grad, `${path}.grad`),
  };
}

function parseNode(x: unknown, path: string): WireNode {
  const o = obj(x, path);
  const kind = str(o.kind, `${path}.kind`);
  if (!KINDS.includes(kind)) throw new WireError(`wire: ${path}.kind ${JSON.stringify(kind)} is not a node kind`);
  return {
    id: str(o.id, `${path}.id`),
    name: str(o.name, `${path}.name`),
    kind: kind as NodeKind,
    label: str(o.label, `${path}.label`),
    module: optStr(o.module, `${path}.module`),
    variable: optStr(o.variable, `${path}.variable`),
    source: optStr(o.source, `${path}.source`),
    next: arr(o.next, `${path}.next`).map((e, i) => {
      const edge = arr(e, `${path}.next[${i}]`);
      return [optStr(edge[0], `${path}.next[${i}][0]`), num(edge[1], `${path}.next[${i}][1]`)];
    }),
    outputs: arr(o.outputs, `${path}.outputs`).map((v, i) => {
      const out = obj(v, `${path}.outputs[${i}]`);
      return {
        shape: numbers(out.shape, `${path}.outputs[${i}].shape`),
        dtype: str(out.dtype, `${path}.outputs[${i}].dtype`),
        device: str(out.device, `${path}.outputs[${i}].device`),
      };
    }),
    saved: arr(o.saved, `${path}.saved`).map((v, i) => {
      const s = obj(v, `${path}.saved[${i}]`);
      return { name: str(s.name, `${path}.saved[${i}].name`), value: parseValue(s.value, `${path}.saved[${i}].value`) };
    }),
    grad_in: arr(o.grad_in, `${path}.grad_in`).map((g, i) => optTensor(g, `${path}.grad_in[${i}]`)),
    grad_out: arr(o.grad_out, `${path}.grad_out`).map((g, i) => optTensor(g, `${path}.grad_out[${i}]`)),
    leaf: parseLeaf(o.leaf, `${path}.leaf`),
    opaque_kind: o.opaque_kind === null ? null : oneOf<OpaqueKind>(o.opaque_kind, OPAQUE_KINDS, `${path}.opaque_kind`),
    executed: optBool(o.executed, `${path}.executed`),
    grad_norm: optNum(o.grad_norm, `${path}.grad_norm`),
  };
}

const REASONS: readonly string[] = [
  "requires_grad_false",
  "detach",
  "no_grad",
  "inference_mode",
  "non_differentiable",
  "data",
  "not_on_path",
  "unused",
  "freed",
  "zero",
  "nonfinite",
  "exploding",
  "vanishing",
  "backward_error",
  "unknown",
];

function strings(x: unknown, path: string): string[] {
  return arr(x, path).map((v, i) => str(v, `${path}[${i}]`));
}

function scope(x: unknown, path: string): boolean | string[] {
  return typeof x === "boolean" ? x : strings(x, path);
}

export function parseToggles(x: unknown, path: string): WireToggles {
  const o = obj(x, path);
  const rg = obj(o.requires_grad, `${path}.requires_grad`);
  // fromEntries, not requires_grad[k] = …: a key such as "__proto__" must stay a plain key.
  const requires_grad: Record<string, boolean> = Object.fromEntries(
    Object.entries(rg).map(([k, v]) => [k, bool(v, `${path}.requires_grad.${k}`)]),
  );
  return {
    requires_grad,
    no_grad: scope(o.no_grad, `${path}.no_grad`),
    inference_mode: scope(o.inference_mode, `${path}.inference_mode`),
    detach: strings(o.detach, `${path}.detach`),
    apply: bool(o.apply, `${path}.apply`),
  };
}

export function parseWhy(x: unknown, path: string): WireWhy {
  const o = obj(x, path);
  return {
    name: str(o.name, `${path}.name`),
    reason: oneOf<WhyReason>(o.reason, REASONS, `${path}.reason`),
    message: str(o.message, `${path}.message`),
    where: optStr(o.where, `${path}.where`),
    source: optStr(o.source, `${path}.source`),
  };
}

function parseControls(x: unknown, path: string): WireControls {
  const o = obj(x, path);
  return {
    rerun: bool(o.rerun, `${path}.rerun`),
    note: optStr(o.note, `${path}.note`),
    leaves: arr(o.leaves, `${path}.leaves`).map((v, i) => {
      const leaf = obj(v, `${path}.leaves[${i}]`);
      return {
        name: str(leaf.name, `${path}.leaves[${i}].name`),
        requires_grad: bool(leaf.requires_grad, `${path}.leaves[${i}].requires_grad`),
        in_graph: bool(leaf.in_graph, `${path}.leaves[${i}].in_graph`),
        dtype: optStr(leaf.dtype, `${path}.leaves[${i}].dtype`),
      };
    }),
    modules: strings(o.modules, `${path}.modules`),
    variables: strings(o.variables, `${path}.variables`),
    detach_nodes: bool(o.detach_nodes, `${path}.detach_nodes`),
  };
}

/** Validate the `diff` trait (null: nothing to compare). */
export function parseDiff(x: unknown): WireDiff | null {
  if (x === null || x === undefined) return null;
  const o = obj(x, "diff");
  const pair = (v: unknown, p: string) => {
    const q = obj(v, p);
    return { before: optValue(q.before, `${p}.before`), after: optValue(q.after, `${p}.after`) };
  };
  const bytes = obj(o.saved_bytes, "diff.saved_bytes");
  return {
    before: num(o.before, "diff.before"),
    after: num(o.after, "diff.after"),
    added: strings(o.added, "diff.added"),
    removed: arr(o.removed, "diff.removed").map((v, i) => {
      const r = obj(v, `diff.removed[${i}]`);
      return {
        id: str(r.id, `diff.removed[${i}].id`),
        name: str(r.name, `diff.removed[${i}].name`),
        kind: str(r.kind, `diff.removed[${i}].kind`),
        module: optStr(r.module, `diff.removed[${i}].module`),
      };
    }),
    gained_grad: strings(o.gained_grad, "diff.gained_grad"),
    lost_grad: strings(o.lost_grad, "diff.lost_grad"),
    loss: pair(o.loss, "diff.loss"),
    grad_norms: arr(o.grad_norms, "diff.grad_norms").map((v, i) => {
      const c = obj(v, `diff.grad_norms[${i}]`);
      return {
        name: str(c.name, `diff.grad_norms[${i}].name`),
        ...pair(c, `diff.grad_norms[${i}]`),
      };
    }),
    saved_bytes: {
      before: num(bytes.before, "diff.saved_bytes.before"),
      after: num(bytes.after, "diff.saved_bytes.after"),
    },
  };
}

/** Validate the `history` trait. */
export function parseHistory(x: unknown): WireHistoryEntry[] {
  return arr(x, "history").map((v, i) => {
    const o = obj(v, `history[${i}]`);
    return {
      index: num(o.index, `history[${i}].index`),
      label: str(o.label, `history[${i}].label`),
      loss: optValue(o.loss, `history[${i}].loss`),
      nodes: num(o.nodes, `history[${i}].nodes`),
      error: optStr(o.error, `history[${i}].error`),
    };
  });
}

function parseRun(x: unknown, path: string): WireRun {
  const o = obj(x, path);
  return {
    mode: oneOf<RunMode>(o.mode, MODES, `${path}.mode`),
    step: num(o.step, `${path}.step`),
    root_gradient:
      o.root_gradient === null ? null : oneOf<RootGradient>(o.root_gradient, ROOT_GRADIENTS, `${path}.root_gradient`),
    loss: optValue(o.loss, `${path}.loss`),
    kept_bytes: num(o.kept_bytes, `${path}.kept_bytes`),
    budget_bytes: num(o.budget_bytes, `${path}.budget_bytes`),
    dropped: num(o.dropped, `${path}.dropped`),
    errors: arr(o.errors, `${path}.errors`).map((e, i) => str(e, `${path}.errors[${i}]`)),
    index: num(o.index, `${path}.index`),
    toggles: o.toggles === null ? null : parseToggles(o.toggles, `${path}.toggles`),
  };
}

/** Validate an untrusted value as a WireGraph; throws WireError saying what is wrong and where. */
// How the `graph` trait travels (schema.py: graph_transport). Skeleton graphs arrive as they are;
// JSON-node graphs arrive packed: {schema_version, packed: <UTF-8 JSON bytes>}, one binary buffer,
// because ipywidgets and the kernel would otherwise walk and re-encode every node on each publish.

/** The graph wire inside what the trait holds: packed graphs decoded, anything else unchanged. */
export function unpackGraph(x: unknown): unknown {
  if (x === null || typeof x !== "object" || !("packed" in x)) return x;
  const packed = (x as { packed: unknown }).packed;
  let bytes: Uint8Array;
  if (packed instanceof ArrayBuffer) bytes = new Uint8Array(packed);
  else if (ArrayBuffer.isView(packed)) bytes = new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
  else throw new WireError("wire: graph.packed is not a binary buffer");
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch (e) {
    throw new WireError(`wire: graph.packed is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** The `graph` trait's value as sent (packed JSON or a skeleton; see unpackGraph) or the plain wire dict. */
export function parseGraph(x: unknown): WireGraph {
  const o = obj(unpackGraph(x), "graph");
  const version = num(o.schema_version, "graph.schema_version");
  if (version !== SCHEMA_VERSION) {
    throw new WireError(
      `wire: graph.schema_version is ${version}, this view reads ${SCHEMA_VERSION}: reinstall gradsight so that its Python and JS parts match`,
    );
  }
  // Big graphs come as a binary skeleton (schema.py: skeleton_to_wire): ids and edges are checked there.
  const skeleton = o.nodes === null ? parseSkeleton(o.skeleton) : null;
  const nodes = skeleton
    ? lightNodes(skeleton)
    : arr(o.nodes, "graph.nodes").map((n, i) => parseNode(n, `graph.nodes[${i}]`));
  // A skeleton's ids are checked unique as they are rebuilt (skeleton.ts).
  const ids = skeleton ? new Set(skeleton.ids) : new Set<string>();
  for (const n of skeleton ? [] : nodes) {
    if (ids.has(n.id)) throw new WireError(`wire: duplicate node id ${JSON.stringify(n.id)}`);
    ids.add(n.id);
  }
  for (const n of skeleton ? [] : nodes) {
    for (const [dst] of n.next) {
      if (dst !== null && !ids.has(dst)) throw new WireError(`wire: edge from ${n.id} to unknown node ${dst}`);
    }
  }
  const roots = arr(o.roots, "graph.roots").map((r, i) => str(r, `graph.roots[${i}]`));
  for (const r of roots) if (!ids.has(r)) throw new WireError(`wire: root ${r} is not a node`);
  return {
    schema_version: version,
    roots,
    message: optStr(o.message, "graph.message"),
    notes: arr(o.notes, "graph.notes").map((s, i) => str(s, `graph.notes[${i}]`)),
    run: parseRun(o.run, "graph.run"),
    missing: arr(o.missing, "graph.missing").map((w, i) => parseWhy(w, `graph.missing[${i}]`)),
    controls: parseControls(o.controls, "graph.controls"),
    nodes,
    skeleton,
  };
}

// -- Inspector replies: messages answering the view's requests (not synced traits) --------------
//
// view → Python: {type: "inspect", request_id, node}            → reply type "inspect"
//                {type: "values", request_id, node, key, index} → reply type "values"
// Python → view: {type, request_id, ok: true, ...body} with binary buffers (previews' values),
//                or {type, request_id, ok: false, error}.

export type Section = "saved" | "grad-in" | "grad-out" | "leaf";

export interface WireHistogram {
  min: number | null;
  max: number | null;
  counts: number[];
  nan: number;
  posinf: number;
  neginf: number;
  /** 1: every value binned; k > 1: every k-th value (big tensors), counts are of that sample. */
  stride: number;
}

/** How a preview's values are packed: float32, or float64 when float32 would show a value as ±Inf or 0. */
export type PreviewDtype = "float32" | "float64";

/** A preview's values, decoded (float64 ones keep what float32 cannot hold, such as 1e300). */
export type PreviewValues = Float32Array | Float64Array;

/** A 1-D/2-D slice of a tensor, block-averaged: values live in buffers[buffer], little-endian `dtype`. */
export interface WirePreview {
  dtype: PreviewDtype;
  shape: number[];
  full_shape: number[];
  index: number[];
  block: number[];
  buffer: number;
}

export interface WireTensorView {
  key: string;
  section: Section;
  name: string;
  summary: WireTensor;
  kept: boolean;
  note: string | null;
  histogram: WireHistogram | null;
  preview: WirePreview | null;
}

export interface WireGradStep {
  step: number;
  /** NaN or ±Infinity when the gradient was not finite (sent as "nan" / "inf" text) */
  grad_norm: number | null;
  received_norm: number | null;
}

export interface WireInspection {
  node: string;
  tensors: WireTensorView[];
  history: WireGradStep[];
  /** for a leaf whose gradient is None or zero */
  why: WireWhy | null;
  /** the whole node (binary skeletons of big graphs leave node details out) */
  detail: WireNode | null;
}

export interface WireReplyError {
  type: string;
  request_id: string;
  ok: false;
  error: string;
}

const SECTIONS: readonly string[] = ["saved", "grad-in", "grad-out", "leaf"];
const PREVIEW_DTYPES: readonly string[] = ["float32", "float64"];
const BYTES: Record<PreviewDtype, number> = { float32: 4, float64: 8 };

export function parsePreview(x: unknown, path: string, buffers: readonly DataView[]): WirePreview {
  const o = obj(x, path);
  const p: WirePreview = {
    dtype: oneOf<PreviewDtype>(o.dtype, PREVIEW_DTYPES, `${path}.dtype`),
    shape: numbers(o.shape, `${path}.shape`),
    full_shape: numbers(o.full_shape, `${path}.full_shape`),
    index: numbers(o.index, `${path}.index`),
    block: numbers(o.block, `${path}.block`),
    buffer: num(o.buffer, `${path}.buffer`),
  };
  const buf = buffers[p.buffer];
  const cells = p.shape.reduce((a, b) => a * b, 1);
  if (buf === undefined) throw new WireError(`wire: ${path}.buffer ${p.buffer} is missing`);
  const bytes = cells * BYTES[p.dtype];
  if (buf.byteLength !== bytes) {
    throw new WireError(
      `wire: ${path} has ${buf.byteLength} bytes, expected ${bytes} for shape ${p.shape} of ${p.dtype}`,
    );
  }
  return p;
}

function parseHistogram(x: unknown, path: string): WireHistogram {
  const o = obj(x, path);
  return {
    min: optNum(o.min, `${path}.min`),
    max: optNum(o.max, `${path}.max`),
    counts: numbers(o.counts, `${path}.counts`),
    nan: num(o.nan, `${path}.nan`),
    posinf: num(o.posinf, `${path}.posinf`),
    neginf: num(o.neginf, `${path}.neginf`),
    stride: num(o.stride, `${path}.stride`),
  };
}

function parseView(x: unknown, path: string, buffers: readonly DataView[]): WireTensorView {
  const o = obj(x, path);
  return {
    key: str(o.key, `${path}.key`),
    section: oneOf<Section>(o.section, SECTIONS, `${path}.section`),
    name: str(o.name, `${path}.name`),
    summary: parseTensor(o.summary, `${path}.summary`),
    kept: bool(o.kept, `${path}.kept`),
    note: optStr(o.note, `${path}.note`),
    histogram: o.histogram === null ? null : parseHistogram(o.histogram, `${path}.histogram`),
    preview: o.preview === null ? null : parsePreview(o.preview, `${path}.preview`, buffers),
  };
}

/** Validate the body of an ok "inspect" reply (buffers: the message's binary buffers). */
export function parseInspection(x: unknown, buffers: readonly DataView[]): WireInspection {
  const o = obj(x, "inspection");
  return {
    node: str(o.node, "inspection.node"),
    tensors: arr(o.tensors, "inspection.tensors").map((v, i) => parseView(v, `inspection.tensors[${i}]`, buffers)),
    history: arr(o.history, "inspection.history").map((h, i) => {
      const g = obj(h, `inspection.history[${i}]`);
      return {
        step: num(g.step, `inspection.history[${i}].step`),
        grad_norm: optValue(g.grad_norm, `inspection.history[${i}].grad_norm`),
        received_norm: optValue(g.received_norm, `inspection.history[${i}].received_norm`),
      };
    }),
    why: o.why === null || o.why === undefined ? null : parseWhy(o.why, "inspection.why"),
    detail: o.detail === null || o.detail === undefined ? null : parseNode(o.detail, "inspection.detail"),
  };
}

/** The values of a preview, in its dtype (little-endian, as Python packs them). */
export function previewValues(p: WirePreview, buffers: readonly DataView[]): PreviewValues {
  const dv = buffers[p.buffer];
  if (dv === undefined) throw new WireError(`wire: preview buffer ${p.buffer} is missing`);
  if (p.dtype === "float64") {
    const out = new Float64Array(dv.byteLength / 8);
    for (let i = 0; i < out.length; i++) out[i] = dv.getFloat64(i * 8, true);
    return out;
  }
  const out = new Float32Array(dv.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = dv.getFloat32(i * 4, true);
  return out;
}
