// @vitest-environment jsdom
// The layout Worker as the view uses it, with a fake Worker (jsdom has none) and a stand-in for
// the bundled worker source: jobs go to the worker, progress shows for slow layouts, a newer job
// terminates a busy worker, a worker that cannot start falls back to the main thread, and
// cleanup terminates the worker and revokes its Blob URL.

import { type LayoutJob, runLayoutJob } from "../../js/layout-job";
import { transformerGraph } from "./big-graphs";
import { mount, q, unmountAll } from "./mount";

vi.mock("../../js/worker-source", () => ({ LAYOUT_WORKER_SOURCE: "/* the bundled layout worker */" }));

class FakeWorker extends EventTarget {
  static all: FakeWorker[] = [];
  jobs: LayoutJob[] = [];
  terminated = false;

  constructor(readonly url: string) {
    super();
    FakeWorker.all.push(this);
  }

  postMessage(job: LayoutJob): void {
    this.jobs.push(job);
  }

  terminate(): void {
    this.terminated = true;
  }

  /** Run the last job as the real worker would, and post the answer back. */
  answer(): void {
    const job = this.jobs[this.jobs.length - 1] as LayoutJob;
    const levels = runLayoutJob(job);
    this.dispatchEvent(new MessageEvent("message", { data: { type: "done", id: job.id, levels } }));
  }

  progress(): void {
    const job = this.jobs[this.jobs.length - 1] as LayoutJob;
    const progress = { done: 0, levels: job.levels.length, items: 10, phase: "order" };
    this.dispatchEvent(new MessageEvent("message", { data: { type: "progress", id: job.id, progress } }));
  }

  fail(): void {
    this.dispatchEvent(new Event("error"));
  }
}

const revoked: string[] = [];

beforeEach(() => {
  FakeWorker.all = [];
  revoked.length = 0;
  vi.stubGlobal("Worker", FakeWorker);
  vi.spyOn(URL, "createObjectURL").mockReturnValue("blob:gradsight-layout");
  vi.spyOn(URL, "revokeObjectURL").mockImplementation((u: string) => {
    revoked.push(u);
  });
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
});

afterEach(() => {
  unmountAll();
  vi.useRealTimers();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

/** 12 layers of 400-op MLPs: about 5,000 nodes, so the flat view and an open MLP go to the Worker. */
const big = () => transformerGraph(12, 400);
const GELU = "encoder.layers.7.mlp/GeluBackward0#0";

function flat(el: HTMLElement): void {
  q(el, '[data-action="flat"]').click();
}

describe("layout in a Worker", () => {
  it("lays out small jobs on the main thread, without starting a worker", () => {
    const { el } = mount(big());
    expect(FakeWorker.all).toHaveLength(0);
    expect(q(el, '[data-gradsight="shown"]').textContent).toMatch(/^\d shown/);
  });

  it("sends a big layout to a worker started from a Blob URL, and draws its answer", () => {
    const { el } = mount(big());
    flat(el);
    expect(FakeWorker.all).toHaveLength(1);
    const worker = FakeWorker.all[0] as FakeWorker;
    expect(worker.url).toBe("blob:gradsight-layout");
    expect(worker.jobs).toHaveLength(1);
    expect(worker.jobs[0]?.levels[0]?.widths.length).toBeGreaterThan(4000);
    expect(q(el, '[data-gradsight="big"]').getAttribute("aria-busy")).toBe("true");
    worker.answer();
    expect(q(el, '[data-gradsight="big"]').hasAttribute("aria-busy")).toBe(false);
  });

  it("shows the progress of a slow layout", () => {
    vi.useFakeTimers();
    const { el } = mount(big());
    flat(el);
    const progress = q(el, '[data-gradsight="progress"]');
    expect(progress.hidden).toBe(true);
    vi.advanceTimersByTime(200);
    expect(progress.hidden).toBe(false);
    (FakeWorker.all[0] as FakeWorker).progress();
    expect(progress.textContent).toContain("order");
    (FakeWorker.all[0] as FakeWorker).answer();
    expect(progress.hidden).toBe(true);
  });

  it("centres a search hit once the worker's layout of its groups arrives", () => {
    const { el, model } = mount(big());
    const input = q<HTMLInputElement>(el, '[data-gradsight="search"]');
    input.value = "layers.7 gelu";
    input.dispatchEvent(new Event("input"));
    q(el, `[data-gradsight="search-results"] [data-node-id="${GELU}"]`).click();
    const worker = FakeWorker.all[0] as FakeWorker;
    expect(worker.jobs).toHaveLength(1);
    worker.answer();
    model.set("selected", "");
    q(el, '[data-gradsight="canvas"]').dispatchEvent(
      new MouseEvent("click", { bubbles: true, clientX: 400, clientY: 260 }),
    );
    expect(model.get("selected")).toBe(GELU);
  });

  it("terminates a busy worker when a newer layout is asked for, and ignores its answer", () => {
    const { el } = mount(big());
    flat(el);
    const first = FakeWorker.all[0] as FakeWorker;
    q(el, '[data-action="leaves"]').click();
    expect(first.terminated).toBe(true);
    const second = FakeWorker.all[1] as FakeWorker;
    expect(second.jobs).toHaveLength(1);
    expect(() => first.answer()).not.toThrow();
    second.answer();
    expect(q(el, '[data-action="leaves"]').getAttribute("aria-pressed")).toBe("true");
    expect(q(el, '[data-gradsight="big"]').hasAttribute("aria-busy")).toBe(false);
  });

  it("falls back to the main thread when the worker cannot start", () => {
    const { el } = mount(big());
    flat(el);
    const worker = FakeWorker.all[0] as FakeWorker;
    worker.fail();
    expect(worker.terminated).toBe(true);
    expect(q(el, '[data-gradsight="big"]').hasAttribute("aria-busy")).toBe(false);
    flat(el);
    flat(el);
    expect(FakeWorker.all).toHaveLength(1);
  });

  it("terminates the worker and revokes its URL on cleanup", () => {
    const { cleanup, el } = mount(big());
    flat(el);
    const worker = FakeWorker.all[0] as FakeWorker;
    cleanup();
    expect(worker.terminated).toBe(true);
    expect(revoked).toEqual(["blob:gradsight-layout"]);
  });
});
