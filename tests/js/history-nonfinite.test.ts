// @vitest-environment jsdom
// A live leaf's .grad history with NaN / Inf norms: JSON has no NaN, so Python sends them as text
// ("nan", "inf"), the guard turns them back into numbers and the table prints them (not "—").

import { parseInspection, WireError } from "../../js/wire";
import { LEAF } from "./fixtures";
import { inspectOk, view } from "./inspect-fixtures";
import { inspector, mount, q, useMountedViews } from "./mount";

useMountedViews();

const steps = [
  { step: 1, received_norm: 0.5, grad_norm: 0.5 },
  { step: 2, received_norm: "nan", grad_norm: "inf" },
  { step: 3, received_norm: null, grad_norm: "nan" },
];

describe("non-finite .grad history", () => {
  it("parses text norms back into NaN and Infinity", () => {
    const body = { node: LEAF, tensors: [], history: steps, why: null };
    const parsed = parseInspection(body, []);
    expect(parsed.history.map((s) => [s.received_norm, s.grad_norm])).toEqual([
      [0.5, 0.5],
      [Number.NaN, Number.POSITIVE_INFINITY],
      [null, Number.NaN],
    ]);
    for (const text of ["big", "constructor", "toString", "__proto__"]) {
      const bad = { ...body, history: [{ step: 1, received_norm: text, grad_norm: 1 }] };
      expect(() => parseInspection(bad, [])).toThrow(WireError); // an object's own keys only, not its prototype's
    }
  });

  it("shows nan and inf in the history table", () => {
    const { el, model } = mount();
    model.pySet("selected", LEAF);
    const reply = inspectOk(model.lastSent("inspect"), [view("leaf:grad", { name: ".grad" })]);
    model.pySend({ ...reply, history: steps });
    const table = q(inspector(el), '[data-section="leaf"] [data-history]');
    const rows = [...table.querySelectorAll("tbody tr")].map((r) =>
      [...r.querySelectorAll("td")].map((c) => c.textContent),
    );
    expect(rows).toEqual([
      ["1", "0.5", "0.5"],
      ["2", "nan", "inf"],
      ["3", "—", "nan"],
    ]);
  });
});
