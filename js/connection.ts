// Whether the view can still reach Python (UI-only state, never synced). After a kernel restart the
// widget's comm is gone with the Debugger that owned it: the view still said "ready", and every
// action failed on its own with "could not send the … request: Cannot send". The signs:
// - `model.send()` throws: the comm is disposed (the request client reports it: `sendFailed`);
// - ipywidgets' widget manager sets the model's `comm_live` to false on the kernel's "restarting"
//   status and fires `comm_live_update` (anywidget passes the event through, but not `comm_live`
//   itself). On that event the view sends Python a `ping` (answered, and ignored by the request
//   client, while the comm lives): by then JupyterLab has disposed the restarted kernel's comms, so
//   the send throws. Where the manager also marks the view's element with the class
//   `jupyter-widgets-disconnected` (a notebook opened from saved widget state), that counts too.
// From then on the view shows status "error" with LOST_TEXT in the error banner, its actions are
// disabled, and requests fail at once with the same text. Hosts without ipywidgets' manager
// (marimo) fire no `comm_live_update`: only a failed send counts there.

import type { Model } from "./model";

export const LOST_TEXT = "the kernel was restarted: re-run the cell that made this debugger";
const DISCONNECTED = "jupyter-widgets-disconnected";
const LIVE_EVENT = "comm_live_update";

export class Connection {
  private failed = false;
  private gone: boolean;
  private probe: ReturnType<typeof setTimeout> | null = null;
  private readonly onLive = (): void => {
    // The widget manager's own listener (which sets the class) ran first: it was added before render.
    const gone = this.disconnected();
    if (gone !== this.gone) {
      this.gone = gone;
      this.changed();
    }
    if (this.probe === null) this.probe = setTimeout(() => this.ping(), 0);
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
    if (this.probe !== null) clearTimeout(this.probe);
  }

  /** Does the comm still take a message? (Python answers `ping`; no one waits for the answer.) */
  private ping(): void {
    this.probe = null;
    if (this.failed) return;
    try {
      this.model.send({ type: "ping", request_id: "" });
    } catch {
      this.sendFailed();
    }
  }

  private disconnected(): boolean {
    return this.host.closest(`.${DISCONNECTED}`) !== null;
  }
}
