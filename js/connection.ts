// Whether the view can still reach Python (UI-only state, never synced). After a kernel restart the
// widget's comm is gone with the Debugger that owned it: the view still said "ready", and every
// action failed on its own with "could not send the … request: Cannot send". Two signs, whichever
// comes first:
// - ipywidgets' widget manager marks the view of a model that lost its comm (on the kernel's
//   "restarting" status, or a notebook opened from saved widget state, which has none) with the
//   class `jupyter-widgets-disconnected` and fires `comm_live_update` on the model (anywidget passes
//   the event through; the model's `comm_live` itself is not exposed, so the class is read);
// - `model.send()` throws (the request client reports it: `sendFailed`).
// From then on the view shows status "error" with LOST_TEXT in the error banner, its actions are
// disabled, and requests fail at once with the same text. Hosts without ipywidgets' manager
// (marimo) fire no `comm_live_update` and add no class: only a failed send counts there.

import type { Model } from "./model";

export const LOST_TEXT = "the kernel was restarted: re-run the cell that made this debugger";
const DISCONNECTED = "jupyter-widgets-disconnected";
const LIVE_EVENT = "comm_live_update";

export class Connection {
  private failed = false;
  private gone: boolean;
  private readonly onLive = (): void => {
    // The widget manager's own listener (which sets the class) ran first: it was added before render.
    const gone = this.disconnected();
    if (gone === this.gone) return;
    this.gone = gone;
    this.changed();
  };

  /** `host`: the element anywidget rendered into; `changed`: `lost` has changed. */
  constructor(
    private readonly model: Model,
    private readonly host: HTMLElement,
    private readonly changed: () => void,
  ) {
    this.gone = this.disconnected();
    model.on(LIVE_EVENT, this.onLive);
  }

  /** Python can no longer be reached: no request can be sent, no trait write arrives. */
  get lost(): boolean {
    return this.failed || this.gone;
  }

  /** `model.send()` threw: the comm is closed (for good: a restarted kernel has no Debugger). */
  sendFailed(): void {
    if (this.failed) return;
    const was = this.lost;
    this.failed = true;
    if (!was) this.changed();
  }

  destroy(): void {
    this.model.off(LIVE_EVENT, this.onLive);
  }

  private disconnected(): boolean {
    return this.host.closest(`.${DISCONNECTED}`) !== null;
  }
}
