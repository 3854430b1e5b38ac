// The wire contract, TypeScript side. Mirrors src/gradsight/schema.py (SCHEMA_VERSION 9).
// parseGraph() is the runtime guard: everything the view draws has passed through it, so a drift
// between the two sides fails loudly (and the golden snapshots in tests/golden fail the JS tests).
// The contract is imported from here alone; it is written in parts: the types (wire-types.ts), the
// checks the parsers are built from (wire-check.ts), the JSON node model (wire-node.ts), the
// inspector replies (wire-inspect.ts) and, for big graphs, the binary skeleton (skeleton.ts).
// This file holds the graph trait itself and the what-if traits (toggles, diff, history).

import { lightNodes, parseSkeleton } from "./skeleton";
import { arr, bool, num, obj, oneOf, optStr, optValue, str, strings, WireError } from "./wire-check";
import { parseNode, parseWhy } from "./wire-node";
import type {
  RootGradient,
  RunMode,
  WireControls,
  WireDiff,
  WireGraph,
  WireHistoryEntry,
  WireRun,
  WireToggles,
} from "./wire-types";

export { WireError } from "./wire-check";
export type {
  PreviewDtype,
  PreviewValues,
  Section,
  WireGradStep,
  WireHistogram,
  WireInspection,
  WirePreview,
  WireReplyError,
  WireTensorView,
} from "./wire-inspect";
export { parseInspection, parsePreview, previewValues } from "./wire-inspect";
export { parseTensor, parseValue, parseWhy } from "./wire-node";
export type {
  NodeKind,
  OpaqueKind,
  RootGradient,
  RunMode,
  WhyReason,
  WireControls,
  WireDiff,
  WireGraph,
  WireHistoryEntry,
  WireLeaf,
  WireNode,
  WireOutput,
  WireRun,
  WireTensor,
  WireToggles,
  WireValue,
  WireWhy,
} from "./wire-types";

export const SCHEMA_VERSION = 9;

const MODES: readonly string[] = ["tensor", "cell", "runnable", "live"];
const ROOT_GRADIENTS: readonly string[] = ["scalar", "ones", "grad_output"];

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

/**
 * Validate an untrusted value as a WireGraph; throws WireError saying what is wrong and where.
 * `x`: the `graph` trait's value as sent (packed JSON or a skeleton; see unpackGraph) or the plain wire dict.
 */
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
