// The runtime checks every wire parser is built from: each takes an untrusted value and the path
// it was read at, and returns it typed or throws a WireError saying what is wrong and where.

export class WireError extends Error {}

export type Obj = Record<string, unknown>;

function fail(path: string, want: string, got: unknown): never {
  const shown = got === null ? "null" : Array.isArray(got) ? "array" : typeof got;
  throw new WireError(`wire: ${path} should be ${want}, got ${shown}`);
}

export function obj(x: unknown, path: string): Obj {
  if (typeof x !== "object" || x === null || Array.isArray(x)) fail(path, "an object", x);
  return x as Obj;
}

export function arr(x: unknown, path: string): unknown[] {
  if (!Array.isArray(x)) fail(path, "an array", x);
  return x;
}

export function str(x: unknown, path: string): string {
  if (typeof x !== "string") fail(path, "a string", x);
  return x;
}

export function optStr(x: unknown, path: string): string | null {
  return x === null ? null : str(x, path);
}

export function num(x: unknown, path: string): number {
  if (typeof x !== "number") fail(path, "a number", x);
  return x;
}

export function optNum(x: unknown, path: string): number | null {
  return x === null ? null : num(x, path);
}

// A Map, not an object literal: `"constructor" in {}` is true (the prototype's), and was read as a number.
const NON_FINITE = new Map<string, number>([
  ["nan", Number.NaN],
  ["inf", Number.POSITIVE_INFINITY],
  ["-inf", Number.NEGATIVE_INFINITY],
]);

/** A loss or gradient norm: a number, null, or (JSON has no NaN) "nan" / "inf" / "-inf". */
export function optValue(x: unknown, path: string): number | null {
  const special = typeof x === "string" ? NON_FINITE.get(x) : undefined;
  return special !== undefined ? special : optNum(x, path);
}

export function bool(x: unknown, path: string): boolean {
  if (typeof x !== "boolean") fail(path, "a boolean", x);
  return x;
}

export function optBool(x: unknown, path: string): boolean | null {
  return x === null ? null : bool(x, path);
}

export function numbers(x: unknown, path: string): number[] {
  return arr(x, path).map((d, i) => num(d, `${path}[${i}]`));
}

export function strings(x: unknown, path: string): string[] {
  return arr(x, path).map((v, i) => str(v, `${path}[${i}]`));
}

/** `x` as one of the strings `allowed` (an enum of the wire). */
export function oneOf<T extends string>(x: unknown, allowed: readonly string[], path: string): T {
  const v = str(x, path);
  if (!allowed.includes(v))
    throw new WireError(`wire: ${path} ${JSON.stringify(v)} is not one of ${allowed.join(", ")}`);
  return v as T;
}
