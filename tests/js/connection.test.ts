// @vitest-environment jsdom
// After a kernel restart the comm is gone: the view said "ready" and every action failed on its own
// with "could not send …: Cannot send". Now the first sign (ipywidgets fires comm_live_update and
// the comm no longer takes a message, or marks the view disconnected, or a request's send throws)
// turns the status to "error" with a plain message,
// and the re-run, clear, toggle and history controls are disabled.

import { LOST_TEXT } from "../../js/connection";
import widget from "../../js/widget";
import { fakeModel } from "./fake-model";
import { click, inspector, mount, nodeEl, q, useMountedViews } from "./mount";
import { LEAF, whatIfGraph } from "./whatif-fixtures";

useMountedViews();

const status = (el: HTMLElement): string => q(el, '[data-gradsight="status"]').textContent ?? "";
const errorText = (el: HTMLElement): string => q(el, '[data-gradsight="error"]').textContent ?? "";
const controlsOf = (el: HTMLElement): (HTMLInputElement | HTMLButtonElement | HTMLSelectElement)[] => [
  q<HTMLButtonElement>(el, '[data-action="rerun"]'),
  q<HTMLButtonElement>(el, '[data-action="clear-toggles"]'),
  ...el.querySelectorAll<HTMLInputElement>('[data-gradsight="toggles"] input[type="checkbox"]'),
  ...el.querySelectorAll<HTMLSelectElement>('[data-gradsight="history"] select'),
];

function assertLost(el: HTMLElement): void {
  expect(status(el)).toBe("error");
  expect(q(el, ".gradsight").getAttribute("data-status")).toBe("error");
  expect(errorText(el)).toContain(LOST_TEXT);
  const controls = controlsOf(el);
  expect(controls.length).toBeGreaterThan(10);
  for (const c of controls) expect(c.disabled, c.outerHTML).toBe(true);
}

describe("a view whose kernel was restarted", () => {
  it("says so when the widget manager marks it disconnected, and disables its actions", () => {
    const { el, model } = mount(whatIfGraph());
    expect(status(el)).toBe("ready");
    q<HTMLInputElement>(el, '[data-toggle="requires-grad"][data-leaf="input1"]').click(); // a pending change
    el.classList.add("jupyter-widgets-disconnected"); // what ipywidgets does on "restarting"
    model.pySend("ignored"); // a message is no sign: only comm_live_update is
    expect(status(el)).toBe("ready");
    model.pyEmit("comm_live_update");
    assertLost(el);
    // nothing is sent any more: a click on a node says why at once
    const sent = model.sent().length;
    click(nodeEl(el, LEAF));
    expect(model.sent().length).toBe(sent);
    expect(q(inspector(el), '[data-inspect-status="error"]').textContent).toBe(LOST_TEXT);
    expect(inspector(el).querySelectorAll("input[type=checkbox]:not(:disabled)")).toHaveLength(0);
  });

  it("checks its comm on comm_live_update (JupyterLab marks nothing): a disposed comm is a lost one", () => {
    vi.useFakeTimers();
    const { el, model } = mount(whatIfGraph());
    model.pyEmit("comm_live_update");
    vi.runAllTimers();
    expect(model.lastSent("ping")).toEqual({ type: "ping", request_id: "" }); // alive: nothing changes
    expect(status(el)).toBe("ready");
    model.send.mockImplementation(() => {
      throw new Error("Cannot send"); // JupyterLab disposed the restarted kernel's comms
    });
    model.pyEmit("comm_live_update");
    expect(status(el)).toBe("ready"); // checked on the next turn, after the manager's own handlers
    vi.runAllTimers();
    assertLost(el);
    vi.useRealTimers();
  });

  it("says so after the first send fails, whatever the host", () => {
    const { el, model } = mount(whatIfGraph());
    model.send.mockImplementation(() => {
      throw new Error("Cannot send");
    });
    q<HTMLInputElement>(el, '[data-toggle="requires-grad"][data-leaf="input1"]').click();
    click(q(el, '[data-action="rerun"]'));
    assertLost(el);
    expect(q(el, '[data-gradsight="refused"]').textContent).toContain(LOST_TEXT);
    // Python's trait writes cannot arrive any more; a stale "ready" from the model does not undo it
    model.pySet("status", "ready");
    expect(status(el)).toBe("error");
  });

  it("renders disconnected from the start (a notebook opened from saved widget state)", () => {
    const host = document.createElement("div");
    host.className = "jupyter-widgets-disconnected";
    document.body.append(host);
    const model = fakeModel({ graph: whatIfGraph() });
    const cleanup = widget.render({ model, el: host });
    assertLost(host);
    cleanup();
    expect(model.handlerCount()).toBe(0);
    host.remove();
  });

  it("comes back when the widget manager reconnects it before any send failed", () => {
    const { el, model } = mount(whatIfGraph());
    const emit = (name: string) => model.pyEmit(name);
    el.classList.add("jupyter-widgets-disconnected");
    emit("comm_live_update");
    assertLost(el);
    el.classList.remove("jupyter-widgets-disconnected");
    emit("comm_live_update");
    expect(status(el)).toBe("ready");
    expect(errorText(el)).not.toContain(LOST_TEXT);
    expect(q<HTMLButtonElement>(el, '[data-action="rerun"]').disabled).toBe(false);
    expect(q<HTMLInputElement>(el, '[data-toggle="requires-grad"][data-leaf="input1"]').disabled).toBe(false);
  });
});
