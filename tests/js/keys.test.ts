// @vitest-environment jsdom
// Keys pressed inside the view are none of the notebook's: "d d" on a focused graph node deleted the
// cell in JupyterLab's command mode, "m" made it Markdown. Only Shift+Enter, Escape, Tab and keys with
// Ctrl / Alt / Meta still reach the notebook. JupyterLab runs its shortcuts in the bubble phase on
// `document`, Notebook 7 in the capture phase: both are checked.

import { keysLabTakes, keysNotebookTakes, mount, nodeEl, pressKey, q, useMountedViews } from "./mount";
import { MUL, whatIfGraph } from "./whatif-fixtures";

useMountedViews();

const COMMAND_MODE = ["d", "m", "a", "b", "x", "z", "1", " ", "Enter", "Shift+M", "Shift+ArrowDown"];
const HOST = ["Shift+Enter", "Escape", "Tab", "Control+s", "Control+Enter"];

function targets(el: HTMLElement): Element[] {
  return [
    nodeEl(el, MUL),
    q(el, '[data-toggle="requires-grad"][data-leaf="input1"]'),
    q(el, '[data-action="rerun"]'),
    q(el, '[data-action="fit"]'),
    q(el, 'select[data-action="direction"]'),
    q(el, '[data-action="filter-toggles"]'),
  ];
}

describe("keys pressed inside the view", () => {
  it("never reach the notebook's command mode, in JupyterLab or in Notebook 7", () => {
    vi.useFakeTimers();
    const { el } = mount(whatIfGraph());
    for (const target of targets(el)) {
      expect(keysLabTakes(target, COMMAND_MODE), target.outerHTML).toEqual([]);
      expect(keysNotebookTakes(target, COMMAND_MODE), target.outerHTML).toEqual([]);
      expect(keysLabTakes(target, HOST), target.outerHTML).toEqual(HOST);
      expect(keysNotebookTakes(target, HOST), target.outerHTML).toEqual(HOST);
    }
    vi.runAllTimers();
    // the opt-out mark is for the key being dispatched only
    expect(el.querySelector("[data-lm-suppress-shortcuts]")).toBeNull();
    vi.useRealTimers();
  });

  it("keep their default: a box still toggles, a button still clicks, the filter still types", () => {
    const { el } = mount(whatIfGraph());
    for (const target of targets(el).slice(1)) {
      for (const spec of ["d", " ", "Shift+M"]) expect(pressKey(target, spec).defaultPrevented, spec).toBe(false);
    }
    expect(pressKey(nodeEl(el, MUL), "d").defaultPrevented).toBe(false); // a node claims Space and Enter only
    // a button's Enter stays its click (nodes claim Enter themselves: they select)
    expect(pressKey(q(el, '[data-action="rerun"]'), "Enter").defaultPrevented).toBe(false);
  });

  it("leave keys pressed outside any view to the notebook", () => {
    mount(whatIfGraph());
    const outside = document.createElement("button");
    document.body.append(outside);
    expect(keysLabTakes(outside, ["d", "Enter"])).toEqual(["d", "Enter"]);
    expect(keysNotebookTakes(outside, ["d", "Enter"])).toEqual(["d", "Enter"]);
    outside.remove();
  });
});
