// Runs layout jobs (layout-job.ts) in a Web Worker started from a Blob URL of the bundled worker
// source (worker-source.ts, filled in by the build), so a 50,000-node layout never freezes the
// notebook. Only the newest job counts: a new one terminates a worker still busy with an older
// one. Where Workers or Blob URLs are unavailable (jsdom, a host whose CSP refuses blob: workers),
// or the worker fails to start, jobs run on the main thread, synchronously. destroy() terminates
// the worker and revokes its URL.

import { type JobProgress, type LayoutJob, type LevelLayout, runLayoutJob, type WorkerReply } from "./layout-job";
import { LAYOUT_WORKER_SOURCE } from "./worker-source";

export interface LayoutCallbacks {
  progress(p: JobProgress): void;
  done(levels: LevelLayout[]): void;
  error(message: string): void;
}

interface Running {
  job: LayoutJob;
  cb: LayoutCallbacks;
}

export function workersAvailable(source: string): boolean {
  return (
    source !== "" &&
    typeof Worker === "function" &&
    typeof Blob === "function" &&
    typeof URL !== "undefined" &&
    typeof URL.createObjectURL === "function"
  );
}

export class LayoutClient {
  private worker: Worker | null = null;
  private url: string | null = null;
  private running: Running | null = null;
  private broken: boolean;
  private readonly onMessage = (e: MessageEvent<WorkerReply>): void => this.handle(e.data);
  private readonly onError = (e: Event): void => {
    // The worker could not start or crashed outside a job: use the main thread from now on.
    e.preventDefault?.();
    this.broken = true;
    const running = this.running;
    this.stopWorker();
    if (running) this.runHere(running.job, running.cb);
  };

  constructor(private readonly source: string = LAYOUT_WORKER_SOURCE) {
    this.broken = !workersAvailable(source);
  }

  /** Whether jobs go to a Worker (false: the main thread). */
  get usesWorker(): boolean {
    return !this.broken;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /**
   * Lay out `job`, superseding any job still running; callbacks come asynchronously from a Worker,
   * or synchronously on the main thread (`here`: a job too small to be worth a round trip).
   */
  run(job: LayoutJob, cb: LayoutCallbacks, here = false): void {
    this.cancel();
    if (!this.broken && !here) {
      try {
        const worker = this.ensureWorker();
        this.running = { job, cb };
        worker.postMessage(job);
        return;
      } catch {
        this.broken = true;
        this.stopWorker();
      }
    }
    this.runHere(job, cb);
  }

  /** Forget the running job (its worker is terminated: a big layout may take seconds). */
  cancel(): void {
    if (!this.running) return;
    this.running = null;
    this.stopWorker();
  }

  destroy(): void {
    this.running = null;
    this.stopWorker();
    if (this.url !== null) URL.revokeObjectURL(this.url);
    this.url = null;
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    this.url ??= URL.createObjectURL(new Blob([this.source], { type: "text/javascript" }));
    const worker = new Worker(this.url);
    worker.addEventListener("message", this.onMessage);
    worker.addEventListener("error", this.onError);
    this.worker = worker;
    return worker;
  }

  private stopWorker(): void {
    const worker = this.worker;
    if (!worker) return;
    worker.removeEventListener("message", this.onMessage);
    worker.removeEventListener("error", this.onError);
    worker.terminate();
    this.worker = null;
  }

  private handle(reply: WorkerReply): void {
    const running = this.running;
    if (!running || reply.id !== running.job.id) return;
    if (reply.type === "progress") {
      running.cb.progress(reply.progress);
      return;
    }
    this.running = null;
    if (reply.type === "done") running.cb.done(reply.levels);
    else running.cb.error(reply.message);
  }

  private runHere(job: LayoutJob, cb: LayoutCallbacks): void {
    let levels: LevelLayout[];
    try {
      levels = runLayoutJob(job);
    } catch (e) {
      cb.error(e instanceof Error ? e.message : String(e));
      return;
    }
    cb.done(levels);
  }
}
