// What-if toggles as data (js/toggles.ts): checked / changed / disabled states against the pending
// toggles, the new pending dict a change produces, module subtrees, counts and descriptions.

import {
  changeCount,
  describeToggles,
  effectiveRequiresGrad,
  isChanged,
  isChecked,
  isDisabled,
  type ToggleState,
  type ToggleTarget,
  withToggle,
} from "../../js/toggles";
import { parseToggles, type WireToggles } from "../../js/wire";
import { toggles } from "./whatif-fixtures";

function state(pending: Partial<WireToggles> = {}): ToggleState {
  return {
    pending: toggles(pending),
    base: new Map([
      ["w", true],
      ["enc.layer.weight", true],
      ["frozen", false],
    ]),
    modules: new Set(["", "enc", "enc.layer"]),
    variables: new Set(["x"]),
  };
}

const leaf = (name: string): ToggleTarget => ({ kind: "requires-grad", attr: "leaf", name });
const mod = (kind: ToggleTarget["kind"], name: string): ToggleTarget => ({ kind, attr: "module", name });
const step = (kind: ToggleTarget["kind"]): ToggleTarget => ({ kind, attr: null, name: null });

describe("requires_grad of leaves", () => {
  it("is the leaf's own flag until a toggle says otherwise", () => {
    const s = state();
    expect(isChecked(s, leaf("w"))).toBe(true);
    expect(isChecked(s, leaf("frozen"))).toBe(false);
    expect(isChanged(s, leaf("w"))).toBe(false);
  });

  it("unchecking writes False; checking it back drops the entry", () => {
    const off = withToggle(state(), leaf("w"), false);
    expect(off.requires_grad).toEqual({ w: false });
    expect(isChanged(state(off), leaf("w"))).toBe(true);
    expect(withToggle(state(off), leaf("w"), true).requires_grad).toEqual({});
  });

  it("a frozen leaf can be unfrozen", () => {
    expect(withToggle(state(), leaf("frozen"), true).requires_grad).toEqual({ frozen: true });
  });

  it("a module entry covers its subtree; the nearest entry wins", () => {
    const s = state({ requires_grad: { enc: false } });
    expect(effectiveRequiresGrad(s, "enc.layer.weight")).toBe(false);
    expect(isChecked(s, mod("freeze", "enc.layer"))).toBe(true);
    expect(isChanged(s, leaf("enc.layer.weight"))).toBe(true);
    // Checking the leaf back under a frozen module needs its own entry.
    const back = withToggle(s, leaf("enc.layer.weight"), true);
    expect(back.requires_grad).toEqual({ enc: false, "enc.layer.weight": true });
    expect(effectiveRequiresGrad(state(back), "enc.layer.weight")).toBe(true);
    // The root module "" covers everything.
    expect(effectiveRequiresGrad(state({ requires_grad: { "": false } }), "w")).toBe(false);
  });

  it("keeps entries outer first, so applying them in order lets the nearest win", () => {
    const leafFirst = withToggle(state(), leaf("frozen"), true);
    const next = withToggle(state(leafFirst), mod("freeze", "enc.layer"), true);
    const last = withToggle(state(next), mod("freeze", ""), true);
    expect(Object.keys(last.requires_grad)).toEqual(["", "frozen", "enc.layer"]);
  });

  it("never turns a name into a prototype key", () => {
    const next = withToggle(state(), leaf("__proto__"), false);
    expect(Object.keys(next.requires_grad)).toEqual(["__proto__"]);
    expect(parseToggles(JSON.parse(JSON.stringify(next)), "p").requires_grad).toEqual(
      JSON.parse('{"__proto__": false}'),
    );
  });
});

describe("freeze", () => {
  it("writes requires_grad[module] = False and unfreezing drops it", () => {
    const frozen = withToggle(state(), mod("freeze", "enc"), true);
    expect(frozen.requires_grad).toEqual({ enc: false });
    expect(withToggle(state(frozen), mod("freeze", "enc"), false).requires_grad).toEqual({});
  });

  it("unfreezing a child of a frozen module writes True for it", () => {
    const s = state({ requires_grad: { enc: false } });
    expect(withToggle(s, mod("freeze", "enc.layer"), false).requires_grad).toEqual({ enc: false, "enc.layer": true });
  });
});

describe("no_grad, inference_mode, detach, apply", () => {
  it("the whole step is True, a module is a list entry", () => {
    expect(withToggle(state(), step("no-grad"), true).no_grad).toBe(true);
    expect(withToggle(state({ no_grad: true }), step("no-grad"), false).no_grad).toBe(false);
    const one = withToggle(state(), mod("no-grad", "enc"), true);
    expect(one.no_grad).toEqual(["enc"]);
    expect(withToggle(state(one), mod("no-grad", "enc"), false).no_grad).toBe(false);
    expect(withToggle(state(), mod("inference-mode", "enc"), true).inference_mode).toEqual(["enc"]);
  });

  it("module boxes are checked and disabled while the whole step is under no_grad", () => {
    const s = state({ no_grad: true });
    expect(isChecked(s, mod("no-grad", "enc"))).toBe(true);
    expect(isDisabled(s, mod("no-grad", "enc"))).toBe(true);
    expect(isChanged(s, mod("no-grad", "enc"))).toBe(false);
    expect(isDisabled(s, step("no-grad"))).toBe(false);
    expect(withToggle(s, mod("no-grad", "enc"), false).no_grad).toBe(true);
  });

  it("detach lists modules and variables; apply is a flag", () => {
    const d = withToggle(state(), { kind: "detach", attr: "variable", name: "x" }, true);
    expect(d.detach).toEqual(["x"]);
    expect(withToggle(state(d), mod("detach", "enc"), true).detach).toEqual(["x", "enc"]);
    expect(withToggle(state(), step("apply"), true).apply).toBe(true);
  });

  it("never mutates the pending toggles it was given", () => {
    const s = state({ requires_grad: { w: false }, detach: ["x"], no_grad: ["enc"] });
    const copy = JSON.stringify(s.pending);
    withToggle(s, leaf("w"), true);
    withToggle(s, mod("detach", "enc"), true);
    withToggle(s, mod("no-grad", "enc.layer"), true);
    expect(JSON.stringify(s.pending)).toBe(copy);
  });
});

describe("counting and describing", () => {
  it("counts changes (apply is not one) and words them like Python", () => {
    const p = toggles({
      requires_grad: { w: false },
      no_grad: ["enc"],
      inference_mode: true,
      detach: ["x"],
      apply: true,
    });
    expect(changeCount(p)).toBe(4);
    expect(changeCount(toggles({ apply: true }))).toBe(0);
    expect(describeToggles(p)).toBe("w.requires_grad=False; no_grad(enc); whole step under inference_mode; detach(x)");
    expect(describeToggles(toggles())).toBe("no toggles");
  });
});
