// A fake anywidget model for jsdom tests: get/set/save_changes/on/off/send like the real one
// (set() fires change:<key> locally, as Backbone does), plus helpers that play Python's part:
// assigning a trait (pySet), sending a custom message with binary buffers (pySend), answering the
// view's last request of a type (pyReply), and reading what the view sent (sent, lastSent).

import type { Mock } from "vitest";
import type { Model, Traits } from "../../js/model";

type Handler = (...args: unknown[]) => void;

export interface FakeModel extends Model {
  /** Python assigns a trait: the value changes and change:<key> fires. */
  pySet<K extends keyof Traits>(key: K, value: Traits[K]): void;
  /** Python sends a custom message (`msg:custom`) with binary buffers, as anywidget delivers them. */
  pySend(msg: unknown, buffers?: DataView[]): void;
  /** The widget manager fires an event on the model (`comm_live_update` when its comm closes). */
  pyEmit(name: string, ...args: unknown[]): void;
  /** Python answers the view's last `type` request: `{type, request_id, ...body}` (ok unless body says). */
  pyReply(type: string, body: Record<string, unknown>): void;
  /** The messages the view sent with model.send(), oldest first. */
  sent(): Record<string, unknown>[];
  /** The last message of `type` the view sent (throws when there is none). */
  lastSent(type: string): Record<string, unknown>;
  /** Every registered handler, by event name (cleanup must leave this empty). */
  handlerCount(): number;
  /** Registered handlers for one event name. */
  handlerCountOf(name: string): number;
  set: Model["set"] & { mock: { calls: unknown[][] } };
  save_changes: Model["save_changes"] & { mock: { calls: unknown[][] } };
  send: Model["send"] & Mock;
}

export function fakeModel(initial: Partial<Traits>): FakeModel {
  const state: Traits = {
    graph: null,
    selected: "",
    status: "ready",
    error: "",
    options: { direction: "TB" },
    // What Python's Debugger starts with (the what-if traits).
    pending: { requires_grad: {}, no_grad: false, inference_mode: false, detach: [], apply: false },
    history: [],
    current: 0,
    baseline: -1,
    diff: null,
    ...initial,
  };
  const handlers = new Map<string, Handler[]>();
  const emit = (name: string, ...args: unknown[]): void => {
    for (const h of [...(handlers.get(name) ?? [])]) h(...args);
  };
  const model = {
    get: <K extends keyof Traits>(key: K): Traits[K] => state[key],
    set: vi.fn(<K extends keyof Traits>(key: K, value: Traits[K]): void => {
      state[key] = value;
      emit(`change:${key}`, null, value);
    }),
    save_changes: vi.fn(),
    send: vi.fn(),
    on: (name: string, cb: Handler): void => {
      handlers.set(name, [...(handlers.get(name) ?? []), cb]);
    },
    off: (name?: string | null, cb?: Handler | null): void => {
      if (!name) {
        handlers.clear();
        return;
      }
      handlers.set(
        name,
        (handlers.get(name) ?? []).filter((h) => cb && h !== cb),
      );
    },
    widget_manager: { get_model: () => Promise.reject(new Error("no widget manager in tests")) },
    pySet<K extends keyof Traits>(key: K, value: Traits[K]): void {
      state[key] = value;
      emit(`change:${key}`, null, value);
    },
    pyEmit(name: string, ...args: unknown[]): void {
      emit(name, ...args);
    },
    pySend(msg: unknown, buffers: DataView[] = []): void {
      emit("msg:custom", msg, buffers);
    },
    pyReply(type: string, body: Record<string, unknown>): void {
      const request = model.lastSent(type);
      emit("msg:custom", { type, request_id: request.request_id, ok: true, ...body }, []);
    },
    sent(): Record<string, unknown>[] {
      return model.send.mock.calls.map((call) => call[0] as Record<string, unknown>);
    },
    lastSent(type: string): Record<string, unknown> {
      const found = model.sent().filter((m) => m.type === type);
      const last = found[found.length - 1];
      if (!last) throw new Error(`the view sent no ${type} message`);
      return last;
    },
    handlerCount: (): number => [...handlers.values()].reduce((n, list) => n + list.length, 0),
    handlerCountOf: (name: string): number => handlers.get(name)?.length ?? 0,
  };
  return model as unknown as FakeModel;
}
