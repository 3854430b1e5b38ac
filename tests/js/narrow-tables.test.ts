// @vitest-environment jsdom
// In a ~300 px notebook column the what-if tables were as wide as their content (a flex item's
// min-width is its content's), overflowed the view with no scrollbar, and focusing a checkbox past
// the edge scrolled the whole view sideways (its `overflow: hidden` is still a scroll container).
// widget.css, applied to the mounted view: every wide table scrolls in its own box, which may
// shrink to the view's width, and the view itself clips instead of scrolling.

import css from "../../js/widget.css?raw";
import { mount, q, useMountedViews } from "./mount";
import { diff, history, whatIfGraph } from "./whatif-fixtures";

useMountedViews();

let style: HTMLStyleElement;
beforeAll(() => {
  // jsdom does not know `overflow: clip` inside @supports: the test reads the rule itself below
  style = document.createElement("style");
  style.textContent = css;
  document.head.append(style);
});
afterAll(() => style.remove());

/** The declarations of the rules (also inside @supports) whose selector list has `selector`. */
function declared(selector: string): Map<string, string> {
  const out = new Map<string, string>();
  const visit = (rules: CSSRuleList): void => {
    for (const rule of rules) {
      if (rule instanceof CSSStyleRule) {
        if (!rule.selectorText.split(",").some((s) => s.trim() === selector)) continue;
        for (let i = 0; i < rule.style.length; i++) {
          const name = rule.style.item(i);
          out.set(name, rule.style.getPropertyValue(name));
        }
      } else if ("cssRules" in rule) visit((rule as CSSGroupingRule).cssRules);
    }
  };
  visit((style.sheet as CSSStyleSheet).cssRules);
  return out;
}

describe("wide tables in a narrow view", () => {
  it("scroll inside their own box, which may shrink to the view's width", () => {
    const { el } = mount(whatIfGraph(1), { history: history(), current: 1, baseline: 0, diff: diff() });
    const boxes = [
      ...el.querySelectorAll<HTMLElement>('[data-gradsight="toggles"] .gs-toggle-table'),
      q(el, ".gs-diff-table"),
    ];
    expect(boxes).toHaveLength(3);
    for (const box of boxes) {
      expect(box.querySelector("table"), box.className).not.toBeNull();
      const style = getComputedStyle(box);
      expect(style.overflow, box.className).toBe("auto");
      expect(style.minWidth, box.className).toBe("0px"); // not its table's width
      expect(style.maxWidth, box.className).toBe("100%");
    }
    // what holds them may shrink too: the lists, and the whole-step group (a fieldset: min-content)
    for (const selector of [".gs-toggle-lists", '[data-toggles-group="step"]']) {
      expect(getComputedStyle(q(el, selector)).minWidth, selector).toBe("0px");
    }
  });

  it("never scroll the view sideways: it clips where the browser can", () => {
    expect(declared(".gradsight").get("overflow")).toBe("clip");
  });
});
