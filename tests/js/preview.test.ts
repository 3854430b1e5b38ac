// @vitest-environment jsdom
// Values previews: strips and heatmaps on a <canvas>, the readout (index in the full tensor and
// value), slices of N-d tensors through `values` requests, and the colour map.

import { cellColour, cellSpans, NAN_RGBA, POSINF_RGBA, readoutText, sliceText } from "../../js/preview-cells";
import { parsePreview } from "../../js/wire";
import { SIN } from "./fixtures";
import { f32, f64, inspectOk, preview, replyError, valuesOk, view } from "./inspect-fixtures";
import { inspector, keysNotebookTakes, type Mounted, mount, q, unmountAll } from "./mount";

let getContext: ReturnType<typeof vi.spyOn>;

beforeEach(() => {
  getContext = vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
});

afterEach(() => {
  unmountAll();
  vi.restoreAllMocks();
});

const KEY = "saved:_saved_self";

/** Select SIN and answer with one tensor whose preview is `p`, values `values`. */
function showPreview(p: Parameters<typeof preview>[0], values: number[]): Mounted & { canvas: HTMLCanvasElement } {
  const m = mount();
  m.model.pySet("selected", SIN);
  const buffer = p?.dtype === "float64" ? f64(values) : f32(values);
  m.model.pySend(inspectOk(m.model.lastSent("inspect"), [view(KEY, { preview: preview(p) })]), [buffer]);
  return { ...m, canvas: q<HTMLCanvasElement>(inspector(m.el), `[data-tensor-key="${KEY}"] canvas[data-preview]`) };
}

function press(target: Element, key: string): void {
  target.dispatchEvent(new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true }));
}

const readout = (el: HTMLElement): string => q(inspector(el), "[data-preview-readout]").textContent ?? "";

describe("preview", () => {
  it("draws a 1-D tensor as a strip", () => {
    const { el, canvas } = showPreview({ shape: [5], full_shape: [5], block: [1] }, [1, 2, 3, 4, 5]);
    expect(canvas.getAttribute("data-preview")).toBe("strip");
    expect(canvas.getAttribute("data-shape")).toBe("5");
    expect(canvas.getAttribute("width")).toBe("5");
    expect(canvas.getAttribute("height")).toBe("1");
    expect(inspector(el).querySelector("[data-slice-dim]")).toBeNull();
    expect(inspector(el).textContent).not.toContain("each cell averages");
  });

  it("draws a 2-D tensor as a heatmap with a keyboard-driven readout", () => {
    const values = [0, 1, 2, 3, 4, Number.NaN, 6, Number.POSITIVE_INFINITY, 8, 9, 10, -11];
    const { el, canvas } = showPreview({ shape: [3, 4], full_shape: [3, 4], block: [1, 1] }, values);
    expect(canvas.tagName).toBe("CANVAS");
    expect(canvas.getAttribute("data-preview")).toBe("heatmap");
    expect(canvas.getAttribute("data-shape")).toBe("3,4");
    expect(canvas.getAttribute("data-block")).toBe("1,1");
    expect(canvas.getAttribute("data-index")).toBe("");
    expect(canvas.getAttribute("tabindex")).toBe("0");
    // its arrows and Escape are ours in Notebook 7 too (which binds them in the capture phase), and
    // a key pressed inside the view (Enter: the notebook's edit mode) is none of the notebook's
    expect(
      keysNotebookTakes(canvas, ["ArrowDown", "ArrowLeft", "Escape", "Shift+Enter", "Enter", "Control+s"]),
    ).toEqual(["Shift+Enter", "Control+s"]);
    expect(readout(el)).toContain("hover a cell");
    canvas.focus();
    press(canvas, "ArrowDown");
    expect(readout(el)).toBe("[0, 0] = 0");
    press(canvas, "ArrowDown");
    press(canvas, "ArrowRight");
    expect(readout(el)).toBe("[1, 1] = nan");
    press(canvas, "ArrowRight");
    press(canvas, "ArrowRight");
    press(canvas, "ArrowRight");
    expect(readout(el)).toBe("[1, 3] = inf");
    press(canvas, "ArrowDown");
    press(canvas, "ArrowDown");
    expect(readout(el)).toBe("[2, 3] = -11");
    expect(q(inspector(el), "[data-preview-readout]").getAttribute("data-cell")).toBe("2,3");
    const legend = q(inspector(el), "[data-preview-legend]");
    expect(legend.querySelector('[data-legend="nan"]')).not.toBeNull();
    expect(legend.querySelector('[data-legend="posinf"]')).not.toBeNull();
    expect(legend.querySelector('[data-legend="neginf"]')).toBeNull();
    press(canvas, "Escape");
    expect(readout(el)).toContain("hover a cell");
  });

  it("says how many values a cell averages, and which ones", () => {
    const { el, canvas } = showPreview({ shape: [2, 2], full_shape: [4, 3], block: [2, 2] }, [1, 2, 3, 4.5]);
    expect(inspector(el).textContent).toContain("each cell averages 4 values (2 × 2)");
    press(canvas, "ArrowRight");
    press(canvas, "ArrowRight");
    press(canvas, "ArrowDown");
    // The last column holds only column 2 of 3.
    expect(readout(el)).toBe("[2:4, 2]  mean of 2 values = 4.5");
  });

  it("draws through a 2D context when there is one, NaN and Inf in their own colours", () => {
    const putImageData = vi.fn();
    const ctx = {
      createImageData: (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) }),
      putImageData,
    };
    getContext.mockReturnValue(ctx as unknown as CanvasRenderingContext2D);
    showPreview({ shape: [1, 3], full_shape: [1, 3], block: [1, 1] }, [Number.NaN, Number.POSITIVE_INFINITY, 0]);
    expect(putImageData).toHaveBeenCalledTimes(1);
    const [image] = putImageData.mock.calls[0] ?? [];
    const data = (image as { data: Uint8ClampedArray }).data;
    expect([...data.slice(0, 4)]).toEqual([...NAN_RGBA]);
    expect([...data.slice(4, 8)]).toEqual([...POSINF_RGBA]);
    expect(data[11]).toBe(0);
  });
});

describe("empty tensors", () => {
  it("show their statistics and draw nothing (a browser's createImageData throws on a zero size)", () => {
    const createImageData = vi.fn((w: number, h: number) => {
      if (!w || !h) throw new Error("The source height is zero");
      return { width: w, height: h, data: new Uint8ClampedArray(w * h * 4) };
    });
    getContext.mockReturnValue({ createImageData, putImageData: vi.fn() } as unknown as CanvasRenderingContext2D);
    showPreview({ shape: [3, 0], full_shape: [3, 0], block: [1, 1] }, []);
    expect(createImageData).not.toHaveBeenCalled();
    expect(q(document.body, "[data-preview-status]").getAttribute("data-preview-status")).toBe("done");
  });

  it.each([
    [[0, 3], "[:, :] of (0, 3)"],
    [[0], "[:] of (0,)"],
  ])("put no cursor on a cell that does not exist (shape %j), and say why", (shape, slice) => {
    const { el, canvas } = showPreview({ shape, full_shape: shape, block: shape.map(() => 1) }, []);
    const why = `no values to read: ${slice} is empty`;
    expect(readout(el)).toBe(why);
    canvas.focus();
    for (const key of ["ArrowDown", "ArrowRight", "ArrowUp", "ArrowLeft"]) {
      press(canvas, key);
      const out = q(inspector(el), "[data-preview-readout]");
      expect(out.hasAttribute("data-cell")).toBe(false);
      expect(out.textContent).toBe(why);
      expect(q<HTMLElement>(inspector(el), ".gs-preview-cursor").hidden).toBe(true);
    }
    expect(canvas.getAttribute("aria-label")).toContain(why);
  });
});

describe("float64 previews", () => {
  it("read and colour values that float32 would turn into ±Inf or 0 as what they are", () => {
    const p = { dtype: "float64" as const, shape: [4], full_shape: [4], block: [1] };
    const { el, canvas } = showPreview(p, [1e300, -1e300, 1, 1e-300]);
    const legend = q(inspector(el), "[data-preview-legend]");
    expect(legend.querySelector('[data-legend="posinf"]')).toBeNull();
    expect(legend.querySelector('[data-legend="neginf"]')).toBeNull();
    expect(legend.querySelector('[data-legend="positive"]')?.textContent).toBe("1e300");
    canvas.focus();
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      press(canvas, "ArrowRight");
      seen.push(readout(el));
    }
    expect(seen).toEqual(["[0] = 1e300", "[1] = -1e300", "[2] = 1", "[3] = 1e-300"]);
  });

  it("draws 1e300 at full colour and never in an infinity's colour", () => {
    const putImageData = vi.fn();
    const createImageData = (w: number, h: number) => ({ width: w, height: h, data: new Uint8ClampedArray(w * h * 4) });
    getContext.mockReturnValue({ createImageData, putImageData } as unknown as CanvasRenderingContext2D);
    showPreview({ dtype: "float64", shape: [1, 2], full_shape: [1, 2], block: [1, 1] }, [1e300, -1e300]);
    const [image] = putImageData.mock.calls[0] ?? [];
    const data = (image as { data: Uint8ClampedArray }).data;
    expect([...data.slice(0, 4)]).toEqual([...cellColour(1, 1)]);
    expect([...data.slice(4, 8)]).toEqual([...cellColour(-1, 1)]);
    expect([...data.slice(0, 4)]).not.toEqual([...POSINF_RGBA]);
  });

  it("refuses a float64 buffer of the wrong size, and an unknown dtype", () => {
    const { el, model } = mount();
    model.pySet("selected", SIN);
    const request = model.lastSent("inspect");
    const bad = preview({ dtype: "float64", shape: [2], full_shape: [2], block: [1] });
    model.pySend(inspectOk(request, [view(KEY, { preview: bad })]), [f32([1, 2])]);
    expect(inspector(el).textContent).toContain("expected 16 for shape 2 of float64");
    const float16 = { ...preview({ shape: [2], full_shape: [2] }), dtype: "float16" };
    expect(() => parsePreview(float16, "p", [f32([1, 2])])).toThrow(/p\.dtype/);
  });
});

describe("slices of N-d tensors", () => {
  const nd = { shape: [4, 5], full_shape: [2, 3, 4, 5], index: [0, 0], block: [1, 1] };
  const twenty = Array.from({ length: 20 }, (_, i) => i);

  it("shows an input per leading dim; changing one asks Python for that slice", () => {
    const { el, model } = showPreview(nd, twenty);
    const inputs = [...inspector(el).querySelectorAll<HTMLInputElement>("input[data-slice-dim]")];
    expect(inputs.map((i) => [i.getAttribute("data-slice-dim"), i.min, i.max, i.value])).toEqual([
      ["0", "0", "1", "0"],
      ["1", "0", "2", "0"],
    ]);
    const dim1 = inputs[1] as HTMLInputElement;
    dim1.value = "2";
    dim1.dispatchEvent(new Event("change", { bubbles: true }));
    const request = model.lastSent("values");
    expect(request).toMatchObject({ type: "values", node: SIN, key: KEY, index: [0, 2] });
    expect(typeof request.request_id).toBe("string");
    expect(q(inspector(el), ".gs-preview").getAttribute("data-preview-status")).toBe("loading");

    model.pySend(valuesOk(request, { ...nd, index: [0, 2] }), [f32(twenty.map((v) => v + 100))]);
    const canvas = q<HTMLCanvasElement>(inspector(el), "canvas[data-preview]");
    expect(canvas.getAttribute("data-index")).toBe("0,2");
    expect(q(inspector(el), ".gs-preview").getAttribute("data-preview-status")).toBe("done");
    expect(inspector(el).textContent).toContain("[0, 2, :, :] of (2, 3, 4, 5)");
    canvas.focus();
    press(canvas, "ArrowLeft");
    expect(readout(el)).toBe("[0, 2, 0, 0] = 100");
  });

  it("clamps what was typed to the tensor's size", () => {
    const { el, model } = showPreview(nd, twenty);
    const dim0 = q<HTMLInputElement>(inspector(el), '[data-slice-dim="0"]');
    dim0.value = "7";
    dim0.dispatchEvent(new Event("change", { bubbles: true }));
    expect(model.lastSent("values").index).toEqual([1, 0]);
    expect(dim0.value).toBe("1");
  });

  it("ignores a superseded values reply and shows a failed one on the preview", () => {
    const { el, model } = showPreview(nd, twenty);
    const dim0 = q<HTMLInputElement>(inspector(el), '[data-slice-dim="0"]');
    dim0.value = "1";
    dim0.dispatchEvent(new Event("change", { bubbles: true }));
    const old = model.lastSent("values");
    const dim1 = q<HTMLInputElement>(inspector(el), '[data-slice-dim="1"]');
    dim1.value = "1";
    dim1.dispatchEvent(new Event("change", { bubbles: true }));
    const current = model.lastSent("values");
    model.pySend(valuesOk(old, { ...nd, index: [1, 0] }), [f32(twenty)]);
    expect(q(inspector(el), "canvas[data-preview]").getAttribute("data-index")).toBe("0,0");
    model.pySend(replyError(current, "index 1 is out of range"));
    expect(q(inspector(el), ".gs-preview").getAttribute("data-preview-status")).toBe("error");
    expect(q(inspector(el), "[data-preview-error]").textContent).toBe("index 1 is out of range");
    // The inspector as a whole is still fine.
    expect(inspector(el).getAttribute("data-inspect-status")).toBe("done");
  });

  it("reports a values reply whose buffer does not match its shape", () => {
    const { el, model } = showPreview(nd, twenty);
    const dim0 = q<HTMLInputElement>(inspector(el), '[data-slice-dim="0"]');
    dim0.value = "1";
    dim0.dispatchEvent(new Event("change", { bubbles: true }));
    model.pySend(valuesOk(model.lastSent("values"), { ...nd, index: [1, 0] }), [f32([1, 2, 3])]);
    expect(q(inspector(el), "[data-preview-error]").textContent).toContain("expected 80");
  });
});

describe("preview arithmetic", () => {
  it("maps cells to indices of the full tensor", () => {
    const p = preview({ shape: [3], full_shape: [2, 10], index: [1], block: [4] });
    expect(cellSpans(p, 0, 0)).toEqual([1, [0, 4]]);
    expect(cellSpans(p, 0, 2)).toEqual([1, [8, 10]]);
    expect(readoutText(p, new Float32Array([1, 2, 3.5]), 0, 2)).toBe("[1, 8:10]  mean of 2 values = 3.5");
    expect(sliceText(p)).toBe("[1, :] of (2, 10)");
    const scalar = preview({ shape: [], full_shape: [], index: [], block: [] });
    expect(readoutText(scalar, new Float32Array([2]), 0, 0)).toBe("[()] = 2");
  });

  it("colours around 0: transparent at 0, red above, blue below, opaque specials", () => {
    expect(cellColour(0, 1)[3]).toBe(0);
    const red = cellColour(1, 1);
    const blue = cellColour(-0.5, 1);
    expect(red[0]).toBeGreaterThan(red[2]);
    expect(blue[2]).toBeGreaterThan(blue[0]);
    expect(blue[3]).toBeLessThan(red[3]);
    expect(cellColour(Number.NaN, 1)).toEqual(NAN_RGBA);
    expect(cellColour(Number.NEGATIVE_INFINITY, 0)[3]).toBe(255);
  });
});
