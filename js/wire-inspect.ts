// The wire contract for inspector replies: messages answering the view's requests (not synced
// traits), their types and runtime guards. Re-exported by wire.ts.
//
// view → Python: {type: "inspect", request_id, node}            → reply type "inspect"
//                {type: "values", request_id, node, key, index} → reply type "values"
// Python → view: {type, request_id, ok: true, ...body} with binary buffers (previews' values),
//                or {type, request_id, ok: false, error}.

import { arr, bool, num, numbers, obj, oneOf, optNum, optStr, optValue, str, WireError } from "./wire-check";
import { parseNode, parseTensor, parseWhy } from "./wire-node";
import type { WireNode, WireTensor, WireWhy } from "./wire-types";

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
