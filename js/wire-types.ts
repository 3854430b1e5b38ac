// The wire contract's types, TypeScript side: what each field of the `graph`, `diff` and `history`
// traits holds. Mirrors src/gradsight/schema.py; wire.ts validates untrusted values into these
// (and re-exports them, so the view imports the whole contract from "./wire").

import type { Skeleton } from "./skeleton";

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
