// Request/reply over the widget's custom messages (inspect, values, rerun, why) (STYLE principle 5: every request has an id, a
// timeout and an error path). The view sends {type, request_id, ...body}; Python answers
// {type, request_id, ok: true, ...} with binary buffers, or {type, request_id, ok: false, error}.
// Requests live in named slots: a new request in a slot supersedes the old one, whose late reply is
// then ignored like any reply this view did not ask for (other views of the same model share the
// message stream, so unknown ids are normal, not errors).

import { LOST_TEXT } from "./connection";
import type { Model } from "./model";

export type Message = Record<string, unknown>;

export interface ReplyHandlers {
  /** An ok reply; may throw (a malformed body), which is reported through `fail`. */
  ok(msg: Message, buffers: readonly DataView[]): void;
  /** Python's error, a malformed reply or a timeout, as one line of text. */
  fail(error: string): void;
}

interface Pending {
  slot: string;
  type: string;
  handlers: ReplyHandlers;
  timer: ReturnType<typeof setTimeout>;
}

export const REQUEST_TIMEOUT_MS = 30_000;

export interface RequestOptions {
  /** This request's timeout (default: the client's). */
  timeoutMs?: number;
  /** What to do after a timeout, ending its message (default: select the node again). */
  retry?: string;
}

/** What the client tells and asks of the view's connection (connection.ts). */
export interface Link {
  readonly lost: boolean;
  sendFailed(): void;
}

let clients = 0;

export class RequestClient {
  private readonly pending = new Map<string, Pending>();
  private readonly slots = new Map<string, string>();
  /** Distinct per client: two views of one model see each other's replies and must tell them apart. */
  private readonly prefix = `gs${++clients}-${Math.random().toString(36).slice(2, 10)}`;
  private counter = 0;
  private readonly onMessage = (msg: unknown, buffers?: unknown): void => this.receive(msg, buffers);

  /** `link`: the view's connection; without it a failed send fails only its own request. */
  constructor(
    private readonly model: Model,
    private readonly timeoutMs = REQUEST_TIMEOUT_MS,
    private readonly link: Link | null = null,
  ) {
    model.on("msg:custom", this.onMessage);
  }

  /** Send `{type, request_id, ...body}` in `slot`, superseding that slot's previous request. */
  request(slot: string, type: string, body: Message, handlers: ReplyHandlers, options: RequestOptions = {}): string {
    this.cancel(slot);
    const id = `${this.prefix}-${++this.counter}`;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const seconds = Math.round(timeoutMs / 1000);
    const retry = options.retry ?? "select the node again to retry";
    const timer = setTimeout(
      () =>
        this.settle(id)?.handlers.fail(
          `no answer from Python after ${seconds} s (is the kernel busy or restarted?): ${retry}`,
        ),
      timeoutMs,
    );
    this.pending.set(id, { slot, type, handlers, timer });
    this.slots.set(slot, id);
    if (this.link?.lost) {
      this.settle(id)?.handlers.fail(LOST_TEXT); // nothing sent: the comm is gone
      return id;
    }
    try {
      this.model.send({ ...body, type, request_id: id });
    } catch (e) {
      this.link?.sendFailed();
      const why = this.link ? `: ${LOST_TEXT}` : "";
      this.settle(id)?.handlers.fail(`could not send the ${type} request (${message(e)})${why}`);
    }
    return id;
  }

  /** Forget the request in `slot` (if any): its reply will be ignored. */
  cancel(slot: string): void {
    const id = this.slots.get(slot);
    if (id !== undefined) this.settle(id);
  }

  /** Forget every request whose slot name starts with `prefix` ("" for all). */
  cancelAll(prefix = ""): void {
    for (const [slot, id] of [...this.slots]) if (slot.startsWith(prefix)) this.settle(id);
  }

  /** Ids of requests still waiting (for tests and debugging). */
  waiting(): string[] {
    return [...this.pending.keys()];
  }

  destroy(): void {
    this.cancelAll();
    this.model.off("msg:custom", this.onMessage);
  }

  private settle(id: string): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    clearTimeout(p.timer);
    this.pending.delete(id);
    if (this.slots.get(p.slot) === id) this.slots.delete(p.slot);
    return p;
  }

  private receive(msg: unknown, buffers: unknown): void {
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) return;
    const m = msg as Message;
    const id = m.request_id;
    if (typeof id !== "string" || !this.pending.has(id)) return;
    const p = this.settle(id);
    if (!p) return;
    if (m.type !== p.type) {
      p.handlers.fail(
        `malformed reply from Python: type ${JSON.stringify(m.type)}, expected ${JSON.stringify(p.type)}`,
      );
    } else if (m.ok === false) {
      const error =
        typeof m.error === "string" && m.error !== "" ? m.error : "Python reported an error without a message";
      p.handlers.fail(error);
    } else if (m.ok !== true) {
      p.handlers.fail("malformed reply from Python: `ok` should be true or false");
    } else {
      try {
        p.handlers.ok(m, dataViews(buffers));
      } catch (e) {
        p.handlers.fail(`cannot show the ${p.type} reply from Python: ${message(e)}`);
      }
    }
  }
}

/** anywidget hands over DataViews; other front ends may pass ArrayBuffers or typed arrays. */
function dataViews(buffers: unknown): DataView[] {
  if (!Array.isArray(buffers)) return [];
  const out: DataView[] = [];
  for (const b of buffers) {
    if (b instanceof DataView) out.push(b);
    else if (ArrayBuffer.isView(b)) out.push(new DataView(b.buffer, b.byteOffset, b.byteLength));
    else if (b instanceof ArrayBuffer) out.push(new DataView(b));
  }
  return out;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
