// The binary skeleton of big graphs (schema.py: skeleton_to_wire), decoded and checked. Past
// SKELETON_THRESHOLD nodes Python sends `"nodes": null` and little-endian typed columns (one entry
// per node, edges in CSR form) plus one table of distinct strings. Node ids are not sent: they are
// rebuilt here exactly like schema.py's skeleton_ids. Details (saved values, gradients, source,
// output dtypes) are not in the skeleton: the inspect reply's `detail` brings them per node.
// Imported by wire.ts (parseGraph); every malformed column is a WireError saying where.

import { type NodeKind, type OpaqueKind, WireError, type WireNode } from "./wire";

export interface Skeleton {
  count: number;
  strings: string[];
  /** Node ids, rebuilt from the columns (never sent). */
  ids: string[];
  /** Indices into `strings`; -1: none (`rank` -1: no "#k" suffix). */
  name: Int32Array;
  module: Int32Array;
  leaf: Int32Array;
  variable: Int32Array;
  shape: Int32Array;
  rank: Int32Array;
  /** 0 op, 1 leaf, 2 root, 3 opaque */
  kind: Uint8Array;
  /** FLAG_* bits; bits 3-5: opaque kind */
  flags: Uint8Array;
  /** NaN: unknown or not finite */
  gradNorm: Float32Array;
  /** count + 1 entries: the edges of node i are edgeOffsets[i] .. edgeOffsets[i + 1] */
  edgeOffsets: Uint32Array;
  /** Target node index, -1 for a None edge. */
  edgeTargets: Int32Array;
  edgeInputNr: Uint16Array;
}

export const KIND_NAMES: readonly NodeKind[] = ["op", "leaf", "root", "opaque"];
export const OPAQUE_NAMES: readonly (OpaqueKind | null)[] = [null, "compiled", "checkpoint", "custom", "backward-hook"];
export const FLAG_EXECUTED_KNOWN = 1;
export const FLAG_EXECUTED = 2;
export const FLAG_NONFINITE = 4;
export const OPAQUE_SHIFT = 3;

type Obj = Record<string, unknown>;

/** A binary column as anywidget delivers it (DataView), or any other view of bytes. */
function bytes(x: unknown, path: string): DataView {
  if (x instanceof DataView) return x;
  if (x instanceof ArrayBuffer) return new DataView(x);
  if (ArrayBuffer.isView(x)) return new DataView(x.buffer, x.byteOffset, x.byteLength);
  const shown = x === null ? "null" : Array.isArray(x) ? "array" : typeof x;
  throw new WireError(`wire: ${path} should be a binary buffer, got ${shown}`);
}

function column<T>(x: unknown, path: string, n: number, size: number, make: (n: number) => T, read: Reader<T>): T {
  const dv = bytes(x, path);
  if (dv.byteLength !== n * size) {
    throw new WireError(`wire: ${path} has ${dv.byteLength} bytes, expected ${n * size} (${n} × ${size})`);
  }
  const out = make(n);
  read(dv, out, n);
  return out;
}

type Reader<T> = (dv: DataView, out: T, n: number) => void;
const i32: Reader<Int32Array> = (dv, out, n) => {
  for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
};
const u32: Reader<Uint32Array> = (dv, out, n) => {
  for (let i = 0; i < n; i++) out[i] = dv.getUint32(i * 4, true);
};
const u16: Reader<Uint16Array> = (dv, out, n) => {
  for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true);
};
const u8: Reader<Uint8Array> = (dv, out, n) => {
  for (let i = 0; i < n; i++) out[i] = dv.getUint8(i);
};
const f32: Reader<Float32Array> = (dv, out, n) => {
  for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
};

function checkRange(values: ArrayLike<number>, lo: number, hi: number, path: string): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v < lo || v >= hi) throw new WireError(`wire: ${path}[${i}] is ${v}, outside ${lo}..${hi - 1}`);
  }
}

/** Decode and check `graph.skeleton`; ids are rebuilt and must be unique. */
export function parseSkeleton(x: unknown, path = "graph.skeleton"): Skeleton {
  if (typeof x !== "object" || x === null || Array.isArray(x)) {
    throw new WireError(`wire: ${path} should be an object, got ${x === null ? "null" : typeof x}`);
  }
  const o = x as Obj;
  const n = o.count;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw new WireError(`wire: ${path}.count is not a count`);
  if (!Array.isArray(o.strings)) throw new WireError(`wire: ${path}.strings should be an array`);
  const strings = o.strings.map((s, i) => {
    if (typeof s !== "string") throw new WireError(`wire: ${path}.strings[${i}] should be a string`);
    return s;
  });
  const ints = (key: string): Int32Array => {
    const col = column(o[key], `${path}.${key}`, n, 4, (k) => new Int32Array(k), i32);
    if (key !== "rank") checkRange(col, key === "name" ? 0 : -1, strings.length, `${path}.${key}`);
    return col;
  };
  const edgeOffsets = column(o.edge_offsets, `${path}.edge_offsets`, n + 1, 4, (k) => new Uint32Array(k), u32);
  if (edgeOffsets[0] !== 0) throw new WireError(`wire: ${path}.edge_offsets must start at 0`);
  for (let i = 0; i < n; i++) {
    if ((edgeOffsets[i] as number) > (edgeOffsets[i + 1] as number)) {
      throw new WireError(`wire: ${path}.edge_offsets decreases at ${i}`);
    }
  }
  const edges = edgeOffsets[n] as number;
  const sk: Skeleton = {
    count: n,
    strings,
    ids: [],
    name: ints("name"),
    module: ints("module"),
    leaf: ints("leaf"),
    variable: ints("variable"),
    shape: ints("shape"),
    rank: ints("rank"),
    kind: column(o.kind, `${path}.kind`, n, 1, (k) => new Uint8Array(k), u8),
    flags: column(o.flags, `${path}.flags`, n, 1, (k) => new Uint8Array(k), u8),
    gradNorm: column(o.grad_norm, `${path}.grad_norm`, n, 4, (k) => new Float32Array(k), f32),
    edgeOffsets,
    edgeTargets: column(o.edge_targets, `${path}.edge_targets`, edges, 4, (k) => new Int32Array(k), i32),
    edgeInputNr: column(o.edge_input_nr, `${path}.edge_input_nr`, edges, 2, (k) => new Uint16Array(k), u16),
  };
  checkRange(sk.kind, 0, KIND_NAMES.length, `${path}.kind`);
  checkRange(sk.edgeTargets, -1, n, `${path}.edge_targets`);
  for (let i = 0; i < n; i++) {
    if ((sk.flags[i] as number) >> OPAQUE_SHIFT >= OPAQUE_NAMES.length) {
      throw new WireError(`wire: ${path}.flags[${i}] has an unknown opaque kind`);
    }
  }
  sk.ids = skeletonIds(sk);
  const seen = new Set<string>();
  for (const id of sk.ids) {
    if (seen.has(id)) throw new WireError(`wire: duplicate node id ${JSON.stringify(id)} in the skeleton`);
    seen.add(id);
  }
  return sk;
}

/** A string of the table, or null for -1. */
export function text(sk: Skeleton, index: number): string | null {
  return index < 0 ? null : (sk.strings[index] as string);
}

/**
 * Node ids from the columns, the rule of schema.py's skeleton_ids (and names.op_ids): leaves are
 * `leaf:<name>` (the op name when unnamed), ops `<module>/<name>` or `<name>`, then `#<rank>`.
 */
export function skeletonIds(sk: Skeleton): string[] {
  const ids = new Array<string>(sk.count);
  for (let i = 0; i < sk.count; i++) {
    const name = text(sk, sk.name[i] as number) as string;
    let base: string;
    if (sk.kind[i] === 1) {
      const leaf = text(sk, sk.leaf[i] as number);
      base = leaf ? `leaf:${leaf}` : name;
    } else {
      const module = text(sk, sk.module[i] as number);
      base = module ? `${module}/${name}` : name;
    }
    const rank = sk.rank[i] as number;
    ids[i] = rank < 0 ? base : `${base}#${rank}`;
  }
  return ids;
}

/** "(16, 10)" → [16, 10]; anything else (a symbolic shape) → []. */
export function parseShapeText(s: string | null): number[] {
  if (s === null || !/^\((\d+(, \d+)*,?)?\)$/.test(s)) return [];
  return s
    .slice(1, -1)
    .split(",")
    .map((d) => d.trim())
    .filter((d) => d !== "")
    .map(Number);
}

/**
 * Nodes with what the skeleton knows (identity, module, variable, edges, flags, grad norm) and
 * nothing it does not: no saved values, gradients, source or output dtypes. The inspector shows
 * those from the inspect reply's `detail`.
 */
export function lightNodes(sk: Skeleton): WireNode[] {
  // 50k nodes at a time: no per-node temporaries beyond the node itself (garbage collection was
  // half the decoding time), shapes parsed once per distinct string, one frozen empty list shared.
  const nodes = new Array<WireNode>(sk.count);
  const shapes = new Map<number, number[]>();
  for (let i = 0; i < sk.count; i++) {
    const kind = KIND_NAMES[sk.kind[i] as number] as NodeKind;
    const name = text(sk, sk.name[i] as number) as string;
    const module = text(sk, sk.module[i] as number);
    const leafName = text(sk, sk.leaf[i] as number);
    const shapeIndex = sk.shape[i] as number;
    const shape = text(sk, shapeIndex);
    const flags = sk.flags[i] as number;
    const start = sk.edgeOffsets[i] as number;
    const next = new Array<[string | null, number]>((sk.edgeOffsets[i + 1] as number) - start);
    for (let k = 0; k < next.length; k++) {
      const t = sk.edgeTargets[start + k] as number;
      next[k] = [t < 0 ? null : (sk.ids[t] as string), sk.edgeInputNr[start + k] as number];
    }
    const norm = sk.gradNorm[i] as number;
    const isLeaf = kind === "leaf";
    let label = isLeaf && leafName ? leafName : name;
    if (!isLeaf && module) label += `  ${module}`;
    if (shape) label += `  ${shape}`;
    let dims: number[] = NONE;
    if (isLeaf) {
      dims = shapes.get(shapeIndex) ?? parseShapeText(shape);
      shapes.set(shapeIndex, dims);
    }
    nodes[i] = {
      id: sk.ids[i] as string,
      name,
      kind,
      label,
      module,
      variable: text(sk, sk.variable[i] as number),
      source: null,
      next,
      outputs: NONE,
      saved: NONE,
      grad_in: NONE,
      grad_out: NONE,
      // An AccumulateGrad exists only for a leaf that required grad when the graph was built.
      leaf: isLeaf
        ? { name: leafName, shape: dims, dtype: "", device: "", requires_grad: true, is_parameter: false, grad: null }
        : null,
      opaque_kind: OPAQUE_NAMES[flags >> OPAQUE_SHIFT] ?? null,
      executed: flags & FLAG_EXECUTED_KNOWN ? (flags & FLAG_EXECUTED) !== 0 : null,
      grad_norm: Number.isNaN(norm) ? null : norm,
    };
  }
  return nodes;
}

// Shared by every light node: frozen, so a change by mistake throws instead of leaking to all.
// biome-ignore lint/suspicious/noExplicitAny: one empty list stands for several element types
const NONE: any[] = Object.freeze([]) as unknown as any[];
