// What-if fixtures for the view tests: the sample graph as a runnable debugger's re-runnable run
// (graph.controls, graph.missing, run index), the `diff` and `history` traits, and `why` answers,
// shaped as src/gradsight/schema.py writes them (wire schema v3).

import type { WireDiff, WireGraph, WireHistoryEntry, WireToggles, WireWhy } from "../../js/wire";
import { ADD, controls, LEAF, MUL, runInfo, SIN, sampleGraph } from "./fixtures";

export const FROZEN = "encoder.frozen";

/** The sample graph as run `index` of a runnable debugger: MulBackward0 in module `layer1`. */
export function whatIfGraph(index = 1): WireGraph {
  const g = sampleGraph();
  g.run = runInfo({ mode: "runnable", root_gradient: "scalar", loss: 0.5, index });
  const mul = g.nodes[1];
  if (mul) mul.module = "layer1";
  g.controls = controls({
    rerun: true,
    leaves: [
      { name: "input1", requires_grad: true, in_graph: true, dtype: "float32" },
      { name: FROZEN, requires_grad: false, in_graph: false, dtype: "float32" },
    ],
    modules: ["", "layer1", "encoder", "encoder.block"],
    variables: ["out1", "out3"],
  });
  g.missing = [why(FROZEN, { where: null })];
  return g;
}

export function why(name: string, extra: Partial<WireWhy> = {}): WireWhy {
  return {
    name,
    reason: "requires_grad_false",
    message: `${name} has requires_grad=False, so autograd never recorded it`,
    where: SIN,
    source: "model.py:12  h = self.frozen(x)",
    ...extra,
  };
}

export function toggles(extra: Partial<WireToggles> = {}): WireToggles {
  return { requires_grad: {}, no_grad: false, inference_mode: false, detach: [], apply: false, ...extra };
}

export function diff(extra: Partial<WireDiff> = {}): WireDiff {
  return {
    before: 0,
    after: 1,
    added: [MUL, LEAF],
    removed: [{ id: "layer2/ReluBackward0#0", name: "ReluBackward0", kind: "op", module: "layer2" }],
    gained_grad: ["input1"],
    lost_grad: ["layer2.weight", "layer2.bias"],
    loss: { before: 0.25, after: 0.5 },
    grad_norms: [
      { name: "input1", before: 1, after: 1.5 },
      { name: "layer2.weight", before: 2, after: null },
      { name: "layer2.bias", before: 0.1, after: 0.2 },
      { name: "w", before: 1, after: 100 },
    ],
    saved_bytes: { before: 2048, after: 1024 },
    ...extra,
  };
}

export function history(): WireHistoryEntry[] {
  return [
    { index: 0, label: "first run", loss: 0.25, nodes: 5, error: null },
    { index: 1, label: "layer2.requires_grad=False", loss: 0.5, nodes: 4, error: null },
    { index: 2, label: "whole step under no_grad", loss: null, nodes: 0, error: "RuntimeError: no grad" },
  ];
}

export { ADD, LEAF, MUL, SIN };
