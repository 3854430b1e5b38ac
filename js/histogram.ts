// The histogram of one tensor ([data-histogram]): equal-width bins of its finite values between min
// and max, drawn as SVG bars (a bin with any values is never drawn flat, so lone outliers show), and
// separate counters for NaN, +Inf and −Inf, which no bin can hold. Past a million values Python bins
// a 1-in-k sample (`stride`), and the view says so. Text and attributes only.

import { h, s } from "./dom";
import { formatCount, formatNumber } from "./format";
import type { WireHistogram } from "./wire";

const HEIGHT = 40;
/** Smallest bar for a non-empty bin, in viewBox units (of HEIGHT). */
const MIN_BAR = 1.5;

export function histogramView(hist: WireHistogram): HTMLElement {
  const finite = hist.counts.reduce((a, b) => a + b, 0);
  const el = h("div", { class: "gs-hist", "data-histogram": "", "data-bins": hist.counts.length });
  if (finite === 0 || hist.min === null || hist.max === null || hist.counts.length === 0) {
    el.append(h("p", { class: "gs-hint", "data-hist": "empty" }, "no finite values to bin"));
  } else {
    el.append(bars(hist, finite), axis(hist.min, hist.max));
  }
  if (hist.stride > 1) {
    const text = `bars count 1 in ${formatCount(hist.stride)} values (a sample); NaN and Inf counts are exact`;
    el.append(h("div", { class: "gs-muted gs-hist-note", "data-hist": "stride" }, text));
  }
  el.append(specials(hist));
  return el;
}

function bars(hist: WireHistogram, finite: number): SVGSVGElement {
  const lo = hist.min ?? 0;
  const hi = hist.max ?? 0;
  const n = hist.counts.length;
  // Interpolated, not lo + i * (hi - lo) / n: hi - lo overflows a double for float64 values near
  // ±1.8e308 (the edges read "nan to inf"); each term here stays within [lo, hi].
  const edge = (i: number): number => (i === 0 ? lo : i === n ? hi : lo * (1 - i / n) + hi * (i / n));
  const peak = Math.max(...hist.counts);
  const svg = s("svg", {
    class: "gs-hist-bars",
    viewBox: `0 0 ${n} ${HEIGHT}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `histogram of ${formatCount(finite)} finite values from ${formatNumber(lo)} to ${formatNumber(hi)}`,
  });
  hist.counts.forEach((count, i) => {
    const height = count === 0 ? 0 : Math.max(MIN_BAR, (count / peak) * HEIGHT);
    const from = formatNumber(edge(i));
    const to = formatNumber(edge(i + 1));
    svg.append(
      s(
        "rect",
        { class: "gs-hist-bar", x: i, y: HEIGHT - height, width: 1, height, "data-count": count },
        s("title", {}, `${from} to ${to}: ${formatCount(count)}`),
      ),
    );
  });
  return svg;
}

function axis(lo: number, hi: number): HTMLElement {
  return h(
    "div",
    { class: "gs-hist-axis" },
    h("span", { "data-hist": "min" }, formatNumber(lo)),
    h("span", { "data-hist": "max" }, formatNumber(hi)),
  );
}

function specials(hist: WireHistogram): HTMLElement {
  const counter = (name: string, label: string, count: number): HTMLElement =>
    h(
      "span",
      { class: count > 0 ? "gs-hist-special gs-bad" : "gs-hist-special gs-muted", "data-hist-count": name },
      `${label} ${formatCount(count)}`,
    );
  return h(
    "div",
    { class: "gs-hist-specials" },
    counter("nan", "NaN", hist.nan),
    counter("posinf", "+Inf", hist.posinf),
    counter("neginf", "−Inf", hist.neginf),
  );
}
