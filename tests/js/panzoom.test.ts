// @vitest-environment jsdom
// Pan/zoom maths and the keyboard map. jsdom has no layout, so the view size is the 800×520
// fallback that PanZoom assumes before the widget is attached.

import { keyToStep } from "../../js/navigate";
import { PanZoom } from "../../js/panzoom";
import { initialViewState, MAX_ZOOM, zoomAt } from "../../js/state";

function setup() {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const viewport = document.createElementNS("http://www.w3.org/2000/svg", "g");
  svg.append(viewport);
  document.body.append(svg);
  const state = initialViewState();
  const pz = new PanZoom(svg, viewport, state);
  return { svg, viewport, state, pz };
}

/** Where a layout point lands on screen under the current transform. */
function screen(state: ReturnType<typeof initialViewState>, x: number, y: number) {
  const t = state.transform;
  return { x: x * t.k + t.x, y: y * t.k + t.y };
}

describe("zoomAt", () => {
  it("keeps the point under the pointer fixed and clamps the zoom", () => {
    const t = { x: 10, y: 20, k: 1 };
    const z = zoomAt(t, 2, 100, 50);
    // layout point under (100, 50) before: (90, 30); after: still under (100, 50)
    expect(90 * z.k + z.x).toBeCloseTo(100);
    expect(30 * z.k + z.y).toBeCloseTo(50);
    expect(zoomAt(t, 1e9, 0, 0).k).toBe(MAX_ZOOM);
  });
});

describe("PanZoom", () => {
  it("fit shows the whole box inside the view and writes the transform", () => {
    const { pz, state, viewport } = setup();
    pz.fit({ x: 0, y: 0, width: 2000, height: 1000 });
    const a = screen(state, 0, 0);
    const b = screen(state, 2000, 1000);
    expect(a.x).toBeGreaterThanOrEqual(0);
    expect(a.y).toBeGreaterThanOrEqual(0);
    expect(b.x).toBeLessThanOrEqual(800);
    expect(b.y).toBeLessThanOrEqual(520);
    expect(viewport.getAttribute("transform")).toMatch(/^translate\(.+\) scale\(.+\)$/);
    pz.destroy();
  });

  it("does not blow small graphs up past 1:1", () => {
    const { pz, state } = setup();
    pz.fit({ x: 0, y: 0, width: 100, height: 50 });
    expect(state.transform.k).toBe(1);
    pz.destroy();
  });

  it("autoFit of a deep graph stays readable and starts at the root", () => {
    const { pz, state } = setup();
    const root = { x: 400, y: 0, width: 120, height: 40 };
    pz.autoFit({ x: 0, y: 0, width: 900, height: 100_000 }, root);
    expect(state.transform.k).toBeGreaterThanOrEqual(0.5);
    const top = screen(state, root.x, root.y);
    expect(top.y).toBeGreaterThanOrEqual(0);
    expect(top.y).toBeLessThan(60);
    expect(top.x).toBeGreaterThan(0);
    expect(top.x).toBeLessThan(800);
    pz.destroy();
  });

  it("ensureVisible pans to an off-screen box and leaves a visible one alone", () => {
    const { pz, state } = setup();
    pz.fit({ x: 0, y: 0, width: 700, height: 400 });
    const before = { ...state.transform };
    pz.ensureVisible({ x: 10, y: 10, width: 50, height: 20 });
    expect(state.transform).toEqual(before);
    pz.ensureVisible({ x: 5000, y: 9000, width: 50, height: 20 });
    const p = screen(state, 5025, 9010);
    expect(p.x).toBeCloseTo(400);
    expect(p.y).toBeCloseTo(260);
    pz.destroy();
  });

  it("wheel zooms and marks the view as moved by the user", () => {
    const { pz, state, svg } = setup();
    const k = state.transform.k;
    svg.dispatchEvent(new WheelEvent("wheel", { deltaY: -100, clientX: 10, clientY: 10, cancelable: true }));
    expect(state.transform.k).toBeGreaterThan(k);
    expect(state.userMoved).toBe(true);
    pz.destroy();
  });
});

describe("keyToStep", () => {
  it("maps arrows to what they mean on screen for each direction", () => {
    expect(keyToStep("ArrowDown", "TB")).toBe("child");
    expect(keyToStep("ArrowUp", "BT")).toBe("child");
    expect(keyToStep("ArrowRight", "LR")).toBe("child");
    expect(keyToStep("ArrowLeft", "RL")).toBe("child");
    expect(keyToStep("ArrowLeft", "TB")).toBe("before");
    expect(keyToStep("ArrowDown", "LR")).toBe("after");
    expect(keyToStep("a", "TB")).toBeNull();
  });
});
