// @vitest-environment jsdom
// The view stacks its inspector below the graph by its own width (not the window's), applied on the
// next frame after a resize, and stops watching when destroyed.

import { HYSTERESIS_PX, NARROW_PX, watchNarrow } from "../../js/narrow";

class FakeObserver {
  static last: FakeObserver | null = null;
  observed: Element[] = [];
  disconnected = false;
  constructor(readonly callback: () => void) {
    FakeObserver.last = this;
  }
  observe(el: Element): void {
    this.observed.push(el);
  }
  disconnect(): void {
    this.disconnected = true;
  }
}

function sized(width: number): HTMLElement {
  const el = document.createElement("div");
  el.getBoundingClientRect = () => ({ width }) as DOMRect;
  return el;
}

describe("watchNarrow", () => {
  beforeEach(() => {
    vi.stubGlobal("ResizeObserver", FakeObserver);
    vi.useFakeTimers({ toFake: ["requestAnimationFrame", "cancelAnimationFrame"] });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("marks a view narrower than the threshold on the frame after a resize, and only then", () => {
    const el = sized(NARROW_PX - 187); // marimo's column in a wide window
    const stop = watchNarrow(el);
    const observer = FakeObserver.last as FakeObserver;
    expect(observer.observed).toEqual([el]);
    observer.callback();
    expect(el.classList.contains("gs-narrow")).toBe(false); // not inside the observer's callback
    vi.advanceTimersToNextFrame();
    expect(el.classList.contains("gs-narrow")).toBe(true);
    el.getBoundingClientRect = () => ({ width: NARROW_PX + 68 }) as DOMRect;
    observer.callback();
    vi.advanceTimersToNextFrame();
    expect(el.classList.contains("gs-narrow")).toBe(false);
    stop();
    expect(observer.disconnected).toBe(true);
  });

  it("turns a narrow view wide again only past the threshold plus a margin (no flip-flop)", () => {
    const el = sized(NARROW_PX - 1);
    watchNarrow(el);
    const observer = FakeObserver.last as FakeObserver;
    const resize = (width: number) => {
      el.getBoundingClientRect = () => ({ width }) as DOMRect;
      observer.callback();
      vi.advanceTimersToNextFrame();
      return el.classList.contains("gs-narrow");
    };
    expect(resize(NARROW_PX - 1)).toBe(true);
    expect(resize(NARROW_PX + HYSTERESIS_PX - 1)).toBe(true); // its stacked layout made it a bit wider
    expect(resize(NARROW_PX + HYSTERESIS_PX)).toBe(false);
    expect(resize(NARROW_PX)).toBe(false); // wide stays wide at the threshold itself
    expect(resize(NARROW_PX - 1)).toBe(true);
  });

  it("leaves a view that is not laid out (width 0, a hidden tab) as it was, and cancels a pending frame", () => {
    const el = sized(0);
    const stop = watchNarrow(el);
    const observer = FakeObserver.last as FakeObserver;
    observer.callback();
    vi.advanceTimersToNextFrame();
    expect(el.classList.contains("gs-narrow")).toBe(false);
    el.getBoundingClientRect = () => ({ width: 300 }) as DOMRect;
    observer.callback();
    stop(); // before the frame: nothing runs after destroy
    vi.advanceTimersToNextFrame();
    expect(el.classList.contains("gs-narrow")).toBe(false);
  });
});
