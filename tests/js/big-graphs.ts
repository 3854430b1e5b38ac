// Big wire graphs for the big-view tests: a synthetic transformer-shaped backward graph (repeated
// `encoder.layers.<i>` blocks with their parameters), and a JS encoder of the binary skeleton that
// mirrors schema.py's skeleton_to_wire, so tests can send any graph the way Python sends big ones.

import { FLAG_EXECUTED, FLAG_EXECUTED_KNOWN, FLAG_NONFINITE, OPAQUE_NAMES, OPAQUE_SHIFT } from "../../js/skeleton";
import type { WireNode } from "../../js/wire";
import { emptyGraph, node, tensor } from "./fixtures";

export interface BlockSpec {
  /** Module path of the block's ops; its parameters are `<module>.weight` / `.bias`. */
  module: string;
  ops: string[];
  /** Parameters (leaves) consumed by the block's first op. */
  params?: string[];
}

/**
 * A chain of blocks, root first: every op points at the next op of the chain, and the first op of
 * each block also at that block's parameters. Ids follow Python's rule (`<module>/<name>#<k>`).
 */
export function blockGraph(blocks: readonly BlockSpec[], rootName = "SumBackward0"): WireNode[] {
  const ops: WireNode[] = [node(`${rootName}#0`, { kind: "root" })];
  const leaves: WireNode[] = [];
  const counters = new Map<string, number>();
  const id = (module: string | null, name: string): string => {
    const base = module ? `${module}/${name}` : name;
    const k = counters.get(base) ?? 0;
    counters.set(base, k + 1);
    return `${base}#${k}`;
  };
  for (const block of blocks) {
    block.ops.forEach((name, j) => {
      const op = node(id(block.module, name), { name, module: block.module, label: name });
      if (j === 0) {
        for (const p of block.params ?? []) {
          const path = `${block.module}.${p}`;
          const leaf = node(`leaf:${path}`, {
            name: "AccumulateGrad",
            kind: "leaf",
            module: block.module,
            leaf: {
              name: path,
              shape: [4, 4],
              dtype: "float32",
              device: "cpu",
              requires_grad: true,
              is_parameter: true,
              grad: null,
            },
          });
          leaves.push(leaf);
          op.next.push([leaf.id, op.next.length + 1]);
        }
      }
      ops.push(op);
    });
  }
  for (let k = 0; k + 1 < ops.length; k++) (ops[k] as WireNode).next.unshift([(ops[k + 1] as WireNode).id, 0]);
  return [...ops, ...leaves];
}

/** A 12-layer (by default) encoder: embeddings, `encoder.layers.<i>.{attn,mlp}`, a head. */
export function transformerBlocks(layers = 12, extraOps = 0): BlockSpec[] {
  const blocks: BlockSpec[] = [{ module: "head", ops: ["AddmmBackward0", "TBackward0"], params: ["weight", "bias"] }];
  for (let i = layers - 1; i >= 0; i--) {
    const at = `encoder.layers.${i}`;
    blocks.push(
      { module: at, ops: ["AddBackward0", "NativeLayerNormBackward0"], params: ["norm.weight"] },
      {
        module: `${at}.mlp`,
        ops: ["AddmmBackward0", "GeluBackward0", "AddmmBackward0", ...Array(extraOps).fill("MulBackward0")],
        params: ["fc1.weight", "fc2.weight"],
      },
      {
        module: `${at}.attn`,
        ops: ["AddmmBackward0", "BmmBackward0", "SoftmaxBackward0", "BmmBackward0", "AddmmBackward0"],
        params: ["qkv.weight", "out.weight"],
      },
    );
  }
  blocks.push({ module: "embed", ops: ["EmbeddingBackward0"], params: ["weight"] });
  return blocks;
}

export function transformerGraph(layers = 12, extraOps = 0): ReturnType<typeof emptyGraph> {
  const nodes = blockGraph(transformerBlocks(layers, extraOps));
  return emptyGraph({ roots: [(nodes[0] as WireNode).id], nodes });
}

/** "(16, 10)" as Python's format_shape writes it. */
function shapeText(shape: readonly number[]): string {
  return `(${shape.join(", ")}${shape.length === 1 ? "," : ""})`;
}

function rankOf(id: string): number {
  const cut = id.lastIndexOf("#");
  const tail = id.slice(cut + 1);
  return cut > 0 && /^\d+$/.test(tail) ? Number(tail) : -1;
}

/** The binary skeleton of `nodes`, as schema.py's skeleton_to_wire builds it (DataView columns). */
export function encodeSkeleton(nodes: readonly WireNode[]): Record<string, unknown> {
  const strings = new Map<string, number>();
  const s = (text: string | null): number => {
    if (text === null) return -1;
    if (!strings.has(text)) strings.set(text, strings.size);
    return strings.get(text) as number;
  };
  const n = nodes.length;
  const index = new Map(nodes.map((x, i) => [x.id, i]));
  const i32 = (f: (x: WireNode) => number) => {
    const dv = new DataView(new ArrayBuffer(4 * n));
    nodes.forEach((x, i) => {
      dv.setInt32(4 * i, f(x), true);
    });
    return dv;
  };
  const u8 = (f: (x: WireNode) => number) => {
    const dv = new DataView(new ArrayBuffer(n));
    nodes.forEach((x, i) => {
      dv.setUint8(i, f(x));
    });
    return dv;
  };
  const edges: [number, number][] = [];
  const offsets = new DataView(new ArrayBuffer(4 * (n + 1)));
  nodes.forEach((x, i) => {
    for (const [dst, nr] of x.next) edges.push([dst === null ? -1 : (index.get(dst) as number), nr]);
    offsets.setUint32(4 * (i + 1), edges.length, true);
  });
  const targets = new DataView(new ArrayBuffer(4 * edges.length));
  const inputNr = new DataView(new ArrayBuffer(2 * edges.length));
  edges.forEach(([t, nr], k) => {
    targets.setInt32(4 * k, t, true);
    inputNr.setUint16(2 * k, nr, true);
  });
  const norm = new DataView(new ArrayBuffer(4 * n));
  nodes.forEach((x, i) => {
    norm.setFloat32(4 * i, x.grad_norm ?? Number.NaN, true);
  });
  const columns = {
    name: i32((x) => s(x.name)),
    module: i32((x) => s(x.module)),
    leaf: i32((x) => s(x.leaf?.name ?? null)),
    variable: i32((x) => s(x.variable)),
    shape: i32((x) => (x.outputs[0] ? s(shapeText(x.outputs[0].shape)) : -1)),
    rank: i32((x) => rankOf(x.id)),
    kind: u8((x) => ["op", "leaf", "root", "opaque"].indexOf(x.kind)),
    flags: u8((x) => {
      let bits = x.executed === null ? 0 : FLAG_EXECUTED_KNOWN | (x.executed ? FLAG_EXECUTED : 0);
      if (x.grad_in.some((g) => g?.nonfinite)) bits |= FLAG_NONFINITE;
      return bits | (OPAQUE_NAMES.indexOf(x.opaque_kind) << OPAQUE_SHIFT);
    }),
    grad_norm: norm,
    edge_offsets: offsets,
    edge_targets: targets,
    edge_input_nr: inputNr,
  };
  return { count: n, strings: [...strings.keys()], ...columns };
}

/** A graph as Python sends a big one: `"nodes": null` and the skeleton. */
export function skeletonGraph(nodes: readonly WireNode[], roots?: string[]): Record<string, unknown> {
  const base = emptyGraph({ roots: roots ?? [(nodes[0] as WireNode).id], nodes: [] });
  return { ...base, nodes: null, skeleton: encodeSkeleton(nodes) };
}

/** A nonfinite gradient summary, for flags. */
export const NAN_GRAD = tensor([2], { nan_count: 1 });

/** Base64 → DataView (the goldens store skeleton columns as base64). */
export function fromBase64(b64: string): DataView {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new DataView(bytes.buffer);
}
