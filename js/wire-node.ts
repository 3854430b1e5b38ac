// The JSON node model of the wire, checked: tensor summaries, saved values, leaves, whole nodes and
// why-records (a leaf without gradient). Shared by parseGraph (wire.ts) and the inspect reply's
// `detail` and `why` (wire-inspect.ts).

import { arr, bool, num, numbers, obj, oneOf, optBool, optNum, optStr, str, WireError } from "./wire-check";
import type { NodeKind, OpaqueKind, WhyReason, WireLeaf, WireNode, WireTensor, WireValue, WireWhy } from "./wire-types";

const KINDS: readonly string[] = ["op", "leaf", "root", "opaque"];
const OPAQUE_KINDS: readonly string[] = ["compiled", "checkpoint", "custom", "backward-hook"];

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

export function parseNode(x: unknown, path: string): WireNode {
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
