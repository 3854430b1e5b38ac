// Entry of the layout Web Worker: bundled on its own by `npm run build` (js/build.mjs) and
// started by layout-client.ts from a Blob URL. It runs layout jobs (layout-job.ts) off the main
// thread, posting progress as each level and phase starts, and the result with its buffers
// transferred. Never imported by the view itself: this module's only job is its side effect.

import { type LayoutJob, runLayoutJob, transferables, type WorkerReply } from "./layout-job";

const scope = globalThis as unknown as DedicatedWorkerGlobalScope;

scope.onmessage = (e: MessageEvent<LayoutJob>): void => {
  const job = e.data;
  try {
    const levels = runLayoutJob(job, (progress) => scope.postMessage({ type: "progress", id: job.id, progress }));
    const reply: WorkerReply = { type: "done", id: job.id, levels };
    scope.postMessage(reply, transferables(levels));
  } catch (err) {
    const reply: WorkerReply = { type: "error", id: job.id, message: err instanceof Error ? err.message : String(err) };
    scope.postMessage(reply);
  }
};
