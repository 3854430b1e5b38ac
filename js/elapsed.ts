// The elapsed time of a run in progress ([data-gradsight="elapsed"], next to the status): started
// when `status` turns "running", updated every 100 ms, stopped (and its timer cleared) when the
// status changes or the view is destroyed. UI-only: Python does not know about it.

import { h, setText } from "./dom";

export const ELAPSED_TICK_MS = 100;

export class ElapsedClock {
  readonly el: HTMLElement;
  private timer: ReturnType<typeof setInterval> | null = null;
  private started = 0;

  constructor() {
    this.el = h("span", { class: "gs-elapsed", "data-gradsight": "elapsed", "aria-live": "off", hidden: true });
  }

  /** Count while `running`; a second call while already counting keeps the first start. */
  set(running: boolean): void {
    if (running === (this.timer !== null)) return;
    if (!running) {
      this.stop();
      return;
    }
    this.started = Date.now();
    this.tick();
    this.el.hidden = false;
    this.timer = setInterval(() => this.tick(), ELAPSED_TICK_MS);
  }

  /** Whether the timer is running (for tests: cleanup must leave none). */
  get active(): boolean {
    return this.timer !== null;
  }

  destroy(): void {
    this.stop();
  }

  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.el.hidden = true;
    setText(this.el, "");
  }

  private tick(): void {
    setText(this.el, `${((Date.now() - this.started) / 1000).toFixed(1)} s`);
  }
}
