// The lazy inspector's conversation with Python for the selected node: an `inspect` request when a
// node is selected (or the graph changes under it, as in live mode), `values` requests for other
// slices of a tensor, and their replies applied to the Inspector. Only the latest request of each
// kind counts: a reply for a node no longer selected is ignored. Slice choices are remembered per
// tensor while the same node stays selected, so live updates do not throw them away.

import type { RequestClient } from "./inspect-client";
import type { Inspector } from "./inspector";
import { parseInspection, parsePreview, previewValues, WireError } from "./wire";

export interface SessionEvents {
  /** The reply reports NaN / Inf values in the node's tensors (count 0: seen, not counted). */
  nonFinite(id: string, count: number): void;
  /** Runs a callback from the message stream or a timer; errors go to the view's error banner. */
  guard(fn: () => void): void;
}

// Slots of the view's shared request client that belong to the selected node.
const NODE = "node:";
const INSPECT = `${NODE}inspect`;
const VALUES = `${NODE}values:`;

export class InspectSession {
  private node: string | null = null;
  private slices = new Map<string, number[]>();

  /** `client`: the view's request client, shared with the what-if requests (one message listener). */
  constructor(
    private readonly client: RequestClient,
    private readonly inspector: Inspector,
    private readonly events: SessionEvents,
  ) {}

  /** Ask Python about node `id` (null: nothing selected), superseding every earlier node request. */
  inspect(id: string | null): void {
    this.client.cancelAll(NODE);
    if (id !== this.node) this.slices = new Map();
    this.node = id;
    if (id === null) return;
    this.inspector.setStatus("loading");
    this.client.request(
      INSPECT,
      "inspect",
      { node: id },
      {
        // Not guarded: what ok() throws (a malformed reply) comes back through fail() to the panel.
        ok: (msg, buffers) => this.onInspection(id, msg, buffers),
        fail: (error) => this.events.guard(() => this.inspector.setStatus("error", error)),
      },
    );
  }

  /** Ask for another slice of tensor `key` of the selected node. */
  values(key: string, index: number[]): void {
    const node = this.node;
    if (node === null) return;
    this.slices.set(key, index);
    this.inspector.setSliceIndex(key, index);
    this.inspector.setPreviewStatus(key, "loading");
    this.client.request(
      VALUES + key,
      "values",
      { node, key, index },
      {
        ok: (msg, buffers) => this.onValues(node, key, msg, buffers),
        fail: (error) => this.events.guard(() => this.inspector.setPreviewStatus(key, "error", error)),
      },
    );
  }

  destroy(): void {
    this.client.cancelAll(NODE);
  }

  private onInspection(id: string, msg: Record<string, unknown>, buffers: readonly DataView[]): void {
    const insp = parseInspection(msg, buffers);
    if (insp.node !== id) throw new WireError(`the reply is about node ${insp.node}, not ${id}`);
    if (this.inspector.node !== id) return;
    const bad = this.inspector.applyInspection(insp, buffers);
    this.inspector.setStatus("done");
    if (bad.present) this.events.nonFinite(id, bad.count);
    // Slices the user chose before a live update: ask for them again.
    for (const tv of insp.tensors) {
      const want = this.slices.get(tv.key);
      if (tv.preview && want && want.join() !== tv.preview.index.join()) this.values(tv.key, want);
    }
  }

  private onValues(node: string, key: string, msg: Record<string, unknown>, buffers: readonly DataView[]): void {
    if (msg.node !== node || msg.key !== key) {
      throw new WireError(`the reply is about ${String(msg.node)} ${String(msg.key)}, not ${node} ${key}`);
    }
    const preview = parsePreview(msg.preview, "values.preview", buffers);
    if (this.node === node) this.inspector.updatePreview(key, preview, previewValues(preview, buffers));
  }
}
