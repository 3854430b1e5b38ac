// Formatting helpers: shapes in Python's tuple spelling, compact statistics, truncation.

import { estimateTextWidth, formatCount, formatNumber, formatShape, truncateEnd, truncateStart } from "../../js/format";
import { scalarText } from "../../js/values";

describe("formatShape", () => {
  it("spells shapes like Python tuples", () => {
    expect(formatShape([25])).toBe("(25,)");
    expect(formatShape([16, 10])).toBe("(16, 10)");
    expect(formatShape([])).toBe("()");
  });
});

describe("formatNumber", () => {
  it.each([
    [null, "—"],
    [0, "0"],
    [3, "3"],
    [-42, "-42"],
    [0.012345, "0.01235"],
    [1.5, "1.5"],
    [123.456, "123.5"],
    [123456.7, "1.23e5"],
    [12345.6, "1.23e4"],
    [9999.99, "1e4"],
    [0.00001234, "1.23e-5"],
    [1e-4, "1e-4"],
    [Number.POSITIVE_INFINITY, "inf"],
    [Number.NaN, "nan"], // a NaN loss or norm; missing values are null
  ])("%s → %s", (x, want) => {
    expect(formatNumber(x)).toBe(want);
  });

  it("groups counts without depending on the locale", () => {
    expect(formatCount(1234567)).toBe("1,234,567");
    expect(formatCount(12)).toBe("12");
    expect(formatCount(null)).toBe("—");
  });
});

describe("truncation and width", () => {
  it("cuts names at the end and module paths at the start", () => {
    expect(truncateEnd("ConvolutionBackward0", 8)).toBe("Convolu…");
    expect(truncateEnd("short", 8)).toBe("short");
    expect(truncateEnd(`${"a".repeat(26)}🙂🙂🙂`, 28)).toBe(`${"a".repeat(26)}🙂…`); // never half an emoji
    expect(truncateStart(`🙂🙂🙂${"b".repeat(28)}`, 30)).toBe(`…🙂${"b".repeat(28)}`);
    expect(truncateStart("encoder.layers.0.attn", 10)).toBe("…rs.0.attn");
    expect(truncateStart("encoder.layers.0.attn", 10)).toHaveLength(10);
  });

  it("estimates longer text as wider", () => {
    expect(estimateTextWidth("MulBackward0", 12)).toBeGreaterThan(estimateTextWidth("Mul", 12));
    expect(estimateTextWidth("(16, 10)", 10, true)).toBeCloseTo(8 * 10 * 0.62);
  });
});

describe("scalarText", () => {
  it("prints saved scalars as Python would", () => {
    expect(scalarText({ type: "none" })).toBe("None");
    expect(scalarText({ type: "bool", value: false })).toBe("False");
    expect(scalarText({ type: "int", value: null, text: "18446744073709551615" })).toBe("18446744073709551615");
    expect(scalarText({ type: "float", value: null, text: "nan" })).toBe("nan");
    expect(scalarText({ type: "str", value: "mean" })).toBe("'mean'");
    expect(scalarText({ type: "tuple", items: [{ type: "int", value: 3, text: "3" }] })).toBe("(3,)");
    const pair = {
      type: "tuple" as const,
      items: [1, 2].map((v) => ({ type: "int" as const, value: v, text: `${v}` })),
    };
    expect(scalarText(pair)).toBe("(1, 2)");
  });
});
