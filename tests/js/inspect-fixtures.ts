// Inspector replies for the view tests: what Python answers to `inspect` and `values` requests
// (src/gradsight/schema.py inspection_to_wire / preview_to_wire), with float32/float64 buffers as DataViews.

import type { WireGradStep, WireHistogram, WirePreview, WireTensorView } from "../../js/wire";
import { tensor } from "./fixtures";

type Msg = Record<string, unknown>;

/** Little-endian float32 values, as Python packs a preview. */
export function f32(values: readonly number[]): DataView {
  const dv = new DataView(new ArrayBuffer(values.length * 4));
  values.forEach((v, i) => {
    dv.setFloat32(i * 4, v, true);
  });
  return dv;
}

/** Little-endian float64 values: a preview whose values float32 cannot hold (`dtype: "float64"`). */
export function f64(values: readonly number[]): DataView {
  const dv = new DataView(new ArrayBuffer(values.length * 8));
  values.forEach((v, i) => {
    dv.setFloat64(i * 8, v, true);
  });
  return dv;
}

export function histogram(extra: Partial<WireHistogram> = {}): WireHistogram {
  return { min: -0.98, max: 0.99, counts: [1, 3, 6, 9, 4, 2], nan: 0, posinf: 0, neginf: 0, stride: 1, ...extra };
}

export function preview(extra: Partial<WirePreview> = {}): WirePreview {
  return { dtype: "float32", shape: [25], full_shape: [25], index: [], block: [1], buffer: 0, ...extra };
}

export function view(key: string, extra: Partial<WireTensorView> = {}): WireTensorView {
  const section = key.startsWith("saved:") ? "saved" : (key.split(":")[0] as WireTensorView["section"]);
  return {
    key,
    section,
    name: key.slice(key.indexOf(":") + 1),
    summary: tensor([25]),
    kept: true,
    note: null,
    histogram: histogram(),
    preview: null,
    ...extra,
  };
}

/** An ok `inspect` reply to `request` (a message the view sent). */
export function inspectOk(request: Msg, tensors: WireTensorView[], history: WireGradStep[] = []): Msg {
  return { type: "inspect", request_id: request.request_id, ok: true, node: request.node, tensors, history };
}

export function replyError(request: Msg, error: string): Msg {
  return { type: request.type, request_id: request.request_id, ok: false, error };
}

/** An ok `values` reply to `request`, its preview in buffer 0. */
export function valuesOk(request: Msg, p: Partial<WirePreview>): Msg {
  return {
    type: "values",
    request_id: request.request_id,
    ok: true,
    node: request.node,
    key: request.key,
    preview: preview({ ...p, buffer: 0 }),
  };
}
