// Text formatting helpers shared by the renderer and the inspector: shapes, numbers, truncation and
// a rough text-width estimate (the layout sizes node boxes without measuring the DOM, so it also
// works in a Worker and in jsdom, which has no layout).

/** Python's tuple spelling of a shape: `[25]` → `"(25,)"`, `[16, 10]` → `"(16, 10)"`, `[]` → `"()"`. */
export function formatShape(shape: readonly number[]): string {
  return `(${shape.join(", ")}${shape.length === 1 ? "," : ""})`;
}

/** A statistic in at most ~4 significant digits; `null` (missing or non-finite) shows as an em dash. */
export function formatNumber(x: number | null): string {
  if (x === null) return "—";
  if (Number.isNaN(x)) return "nan"; // a NaN loss or norm (missing values are null)
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return "0";
  const abs = Math.abs(x);
  if (Number.isInteger(x) && abs < 1e6) return String(x);
  if (abs >= 1e4 || abs < 1e-3) return trimExponent(x.toExponential(2)); // 12345.6 → "1.23e4", as elsewhere
  const p = x.toPrecision(4); // 9999.99 rounds up to "1.000e+4"
  return p.includes("e") ? trimExponent(x.toExponential(2)) : trimZeros(p);
}

/** A count with thousands separators that do not depend on the browser's locale: `12345` → `"12,345"`. */
export function formatCount(n: number | null): string {
  if (n === null) return "—";
  const sign = n < 0 ? "-" : "";
  const digits = String(Math.trunc(Math.abs(n)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** `"1.50e+5"` → `"1.5e5"`, `"1.00e-4"` → `"1e-4"`: shorter, still unambiguous. */
function trimExponent(s: string): string {
  const [mantissa = s, exponent = "0"] = s.split("e");
  return `${trimZeros(mantissa)}e${exponent.replace("+", "")}`;
}

function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/** Cut `text` to `max` characters, replacing the end with an ellipsis (for op and leaf names). */
export function truncateEnd(text: string, max: number): string {
  const chars = Array.from(text); // code points: never half an emoji
  return chars.length <= max ? text : `${chars.slice(0, Math.max(0, max - 1)).join("")}…`;
}

/**
 * Cut `text` to `max` characters, replacing the start with an ellipsis. Module paths are most
 * telling at their tail (`…layers.11.attn.out_proj`), so they lose their head.
 */
export function truncateStart(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `…${chars.slice(chars.length - Math.max(0, max - 1)).join("")}`;
}

/**
 * Approximate rendered width of `text` in pixels: ~0.6 em per glyph for monospace; for the bold
 * sans of node names, per-glyph weights calibrated on DejaVu Sans Bold (one of the wider UI fonts,
 * measured in chromium) so that op names such as `NativeBatchNormBackward0` fit their box.
 */
export function estimateTextWidth(text: string, fontSize: number, mono = false): number {
  if (mono) return text.length * fontSize * 0.62;
  let em = 0;
  for (const ch of text) em += /[A-Z@MWmw]/.test(ch) ? 0.8 : /[il.,:;|!'()[\] ]/.test(ch) ? 0.36 : 0.64;
  return em * fontSize;
}

/** Bytes in binary units: `0` → `"0 B"`, `1536` → `"1.5 KiB"`, `268435456` → `"256 MiB"`. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Math.max(0, n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const text = u === 0 ? String(Math.round(v)) : trimZeros(v.toFixed(v >= 100 ? 0 : 1));
  return `${text} ${units[u]}`;
}

/** One tensor element as Python prints it: nan and ±inf spelled out (never an em dash). */
export function formatElement(x: number): string {
  if (Number.isNaN(x)) return "nan";
  return formatNumber(x);
}

/** `n` with its noun, pluralized: `plural(1, "tensor")` → `"1 tensor"`, `plural(3, "tensor")` → `"3 tensors"`. */
export function plural(n: number, noun: string): string {
  return `${formatCount(n)} ${noun}${n === 1 ? "" : "s"}`;
}
