// Hand-written wire graphs for the view tests. SAMPLE is what autograd builds for
//   input1 = torch.randn(25, requires_grad=True); out3 = 2 * torch.sin(input1) + 1
// AddBackward0 (root) → MulBackward0 → SinBackward0 (saves input1 as _saved_self) → AccumulateGrad.

import {
  SCHEMA_VERSION,
  type WireControls,
  type WireGraph,
  type WireNode,
  type WireRun,
  type WireTensor,
} from "../../js/wire";

/** A tensor summary; `nonfinite` follows the NaN / Inf counts unless given. */
export function tensor(shape: number[], extra: Partial<WireTensor> = {}): WireTensor {
  const numel = shape.reduce((a, b) => a * b, 1);
  const nonfinite = (extra.nan_count ?? 0) + (extra.inf_count ?? 0) > 0;
  return {
    shape,
    dtype: "float32",
    device: "cpu",
    numel,
    min: -0.98,
    max: 0.99,
    mean: 0.0123,
    std: 0.61,
    norm: 3.2,
    nan_count: 0,
    inf_count: 0,
    layout: "strided",
    freed: false,
    note: null,
    nonfinite,
    ...extra,
  };
}

export function node(id: string, extra: Partial<WireNode> = {}): WireNode {
  const name = id.split("#")[0] ?? id;
  return {
    id,
    name,
    kind: "op",
    label: name,
    module: null,
    variable: null,
    source: null,
    next: [],
    outputs: [],
    saved: [],
    grad_in: [],
    grad_out: [],
    leaf: null,
    opaque_kind: null,
    executed: null,
    grad_norm: null,
    ...extra,
  };
}

/** What a tensor debugger reports: no backward of its own, no loss, nothing kept. */
export function runInfo(extra: Partial<WireRun> = {}): WireRun {
  return {
    mode: "tensor",
    step: 0,
    root_gradient: null,
    loss: null,
    kept_bytes: 0,
    budget_bytes: 0,
    dropped: 0,
    errors: [],
    index: 0,
    toggles: null,
    ...extra,
  };
}

/** What a debugger that cannot re-run reports (a tensor debugger), unless `extra` says otherwise. */
export function controls(extra: Partial<WireControls> = {}): WireControls {
  return { rerun: false, note: null, leaves: [], modules: [], variables: [], detach_nodes: false, ...extra };
}

/** An empty graph of the current schema (no nodes), for tests that fill in the rest. */
export function emptyGraph(extra: Partial<WireGraph> = {}): WireGraph {
  return {
    schema_version: SCHEMA_VERSION,
    roots: [],
    message: null,
    notes: [],
    run: runInfo(),
    missing: [],
    controls: controls(),
    nodes: [],
    ...extra,
  };
}

export const ADD = "AddBackward0#0";
export const MUL = "MulBackward0#0";
export const SIN = "SinBackward0#0";
export const LEAF = "AccumulateGrad#0";

const out25 = [{ shape: [25], dtype: "float32", device: "cpu" }];

export function sampleGraph(): WireGraph {
  return {
    schema_version: SCHEMA_VERSION,
    roots: [ADD],
    message: null,
    notes: [],
    run: runInfo(),
    missing: [],
    controls: controls(),
    nodes: [
      node(ADD, {
        kind: "root",
        label: "AddBackward0  (25,)",
        variable: "out3",
        next: [
          [MUL, 0],
          [null, 0],
        ],
        outputs: out25,
        saved: [{ name: "_saved_alpha", value: { type: "int", value: 1, text: "1" } }],
      }),
      node(MUL, {
        label: "MulBackward0  (25,)",
        next: [
          [SIN, 0],
          [null, 0],
        ],
        outputs: out25,
        saved: [
          { name: "_saved_other", value: { type: "int", value: 2, text: "2" } },
          { name: "_saved_self", value: { type: "none" } },
        ],
      }),
      node(SIN, {
        label: "SinBackward0  (25,)",
        variable: "out1",
        source: "cell.py:2  out1 = torch.sin(input1)",
        next: [[LEAF, 0]],
        outputs: out25,
        saved: [{ name: "_saved_self", value: { type: "tensor", ...tensor([25], { freed: true, std: null }) } }],
      }),
      node(LEAF, {
        kind: "leaf",
        label: "input1  (25,)",
        leaf: {
          name: "input1",
          shape: [25],
          dtype: "float32",
          device: "cpu",
          requires_grad: true,
          is_parameter: false,
          grad: tensor([25]),
        },
      }),
    ],
  };
}
