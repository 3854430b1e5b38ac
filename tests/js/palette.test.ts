// @vitest-environment jsdom
/// <reference types="vite/client" />
// The view's theme: which host variables widget.css's --gs-* colours resolve to (JupyterLab's, VS Code's,
// marimo's, or the fixed light colours, in that order), and watchTheme noticing each host's switch.
// jsdom resolves no var(), so the declarations are resolved here by a small var() evaluator.

import { DEFAULT_PALETTE, ThemePalette, watchTheme } from "../../js/palette";
import css from "../../js/widget.css?raw";

/** The custom properties declared in the first `.gradsight { ... }` block. */
function gsDeclarations(): Map<string, string> {
  const block = /\.gradsight\s*\{([^}]*)\}/.exec(css)?.[1] ?? "";
  const out = new Map<string, string>();
  for (const m of block.matchAll(/(--gs-[\w-]+)\s*:\s*([^;]+);/g)) out.set(m[1] as string, (m[2] as string).trim());
  return out;
}

/** `value` with every var(--x, fallback) replaced as the browser does, given the host's variables. */
function resolve(value: string, host: Record<string, string>): string {
  const start = value.indexOf("var(");
  if (start < 0) return value.replace(/\s+/g, " ").trim();
  let depth = 0;
  let end = start + 3;
  for (; end < value.length; end++) {
    if (value[end] === "(") depth++;
    else if (value[end] === ")" && --depth === 0) break;
  }
  const inner = value.slice(start + 4, end);
  const comma = inner.indexOf(",");
  const name = (comma < 0 ? inner : inner.slice(0, comma)).trim();
  const fallback = comma < 0 ? "" : inner.slice(comma + 1);
  const got = host[name] ?? resolve(fallback, host);
  return resolve(value.slice(0, start) + got + value.slice(end + 1), host);
}

const MARIMO_DARK = {
  // marimo 0.25.2's values under its dark theme, as chromium computes them inside its shadow root
  "--background": "#181c1a",
  "--foreground": "#eceeed",
  "--muted-foreground": "#aab2af",
  "--border": "#3b403e",
  "--input": "#474c4a",
  "--primary": "#28879f",
  "--accent": "#1d5b6a",
  "--card": "#252927",
  "--slate-3": "#212225",
  "--slate-9": "#696e77",
  "--grass-3": "#1b2a1e",
  "--grass-11": "#71d083",
  "--orange-3": "#331e0b",
  "--orange-11": "#ffa057",
  "--red-3": "#3b1219",
  "--red-11": "#ff9592",
  "--monospace-font": '"Fira Mono",monospace',
  "--text-font": '"PT Sans",sans-serif',
};

const PALETTE_VARIABLES = {
  bg: "--gs-bg",
  bg2: "--gs-bg2",
  fg: "--gs-fg",
  fg2: "--gs-fg2",
  border: "--gs-border",
  border2: "--gs-border2",
  brand: "--gs-brand",
  brandBg: "--gs-brand-bg",
  leaf: "--gs-leaf",
  leafBg: "--gs-leaf-bg",
  warn: "--gs-warn",
  error: "--gs-error",
  errorBg: "--gs-error-bg",
  nodeBg: "--gs-node-bg",
  edge: "--gs-edge",
} as const;

function luminance(hex: string): number {
  const n = Number.parseInt(hex.slice(1), 16);
  return 0.2126 * ((n >> 16) & 255) + 0.7152 * ((n >> 8) & 255) + 0.0722 * (n & 255);
}

describe("widget.css colours", () => {
  const decl = gsDeclarations();
  const colour = (name: string, host: Record<string, string>) => resolve(decl.get(name) ?? "", host);

  it("fall back to the fixed light palette (the canvas's DEFAULT_PALETTE) with no host variables", () => {
    const long = (hex: string) => (hex.length === 4 ? `#${[...hex.slice(1)].map((c) => c + c).join("")}` : hex);
    for (const [key, name] of Object.entries(PALETTE_VARIABLES)) {
      expect(long(colour(name, {})), name).toBe(DEFAULT_PALETTE[key as keyof typeof PALETTE_VARIABLES]);
    }
    expect(colour("--gs-mono", {})).toBe("ui-monospace, Menlo, Consolas, monospace");
  });

  it("follow marimo's dark theme: dark backgrounds, light text, every colour from marimo", () => {
    for (const [name, value] of decl) {
      if (name === "--gs-font" || name === "--gs-mono") continue;
      expect(Object.values(MARIMO_DARK), name).toContain(colour(name, MARIMO_DARK));
      expect(value.indexOf("--jp-"), name).toBeLessThan(value.indexOf("--vscode-"));
    }
    expect(luminance(colour("--gs-bg", MARIMO_DARK))).toBeLessThan(60);
    expect(luminance(colour("--gs-node-bg", MARIMO_DARK))).toBeLessThan(60);
    expect(luminance(colour("--gs-fg", MARIMO_DARK))).toBeGreaterThan(180);
    expect(colour("--gs-mono", MARIMO_DARK)).toBe('"Fira Mono",monospace');
    expect(colour("--gs-font", MARIMO_DARK)).toBe('"PT Sans",sans-serif');
  });

  it("keep JupyterLab's variables first and VS Code's before marimo's", () => {
    const jupyterDark = { "--jp-layout-color1": "#111111", "--jp-ui-font-color1": "#ffffffde" };
    expect(colour("--gs-bg", { ...MARIMO_DARK, "--background": "#ffffff", ...jupyterDark })).toBe("#111111");
    expect(colour("--gs-fg", { ...MARIMO_DARK, ...jupyterDark })).toBe("#ffffffde");
    const vscode = { "--vscode-editor-background": "#1e1e1e" };
    expect(colour("--gs-bg", { ...MARIMO_DARK, "--background": "#ffffff", ...vscode })).toBe("#1e1e1e");
  });
});

describe("watchTheme", () => {
  afterEach(() => {
    document.body.className = "";
    delete document.body.dataset.theme;
  });

  const flips = async (change: () => void): Promise<number> => {
    let calls = 0;
    const stop = watchTheme(() => calls++);
    change();
    await Promise.resolve(); // mutation records are delivered in a microtask
    stop();
    return calls;
  };

  it("notices marimo's switch: the body's classes and its data-theme", async () => {
    expect(await flips(() => document.body.classList.add("dark", "dark-theme"))).toBe(1);
    expect(await flips(() => (document.body.dataset.theme = "dark"))).toBe(1);
  });

  it("notices JupyterLab's and VS Code's attributes, not unrelated ones", async () => {
    expect(await flips(() => document.body.setAttribute("data-jp-theme-light", "false"))).toBe(1);
    expect(await flips(() => document.body.setAttribute("data-vscode-theme-kind", "vscode-dark"))).toBe(1);
    expect(await flips(() => document.body.setAttribute("data-notebook", "x"))).toBe(0);
  });

  it("stops watching", async () => {
    let calls = 0;
    watchTheme(() => calls++)();
    document.body.dataset.theme = "light";
    await Promise.resolve();
    expect(calls).toBe(0);
  });
});

describe("ThemePalette", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("keeps no palette read while detached, reads once in the page, and again after forget()", () => {
    let reads = 0;
    vi.stubGlobal("getComputedStyle", () => {
      reads++;
      return { color: "rgb(30, 30, 30)", getPropertyValue: () => "" } as unknown as CSSStyleDeclaration;
    });
    const el = document.createElement("div");
    const theme = new ThemePalette(el);
    expect(theme.get()).toBe(DEFAULT_PALETTE); // detached: the light defaults, the same object each time
    expect(theme.get()).toBe(DEFAULT_PALETTE);
    expect(reads).toBe(0);
    document.body.append(el);
    const dark = theme.get();
    expect(dark.nodeBg).toBe("rgb(30, 30, 30)");
    expect(theme.get()).toBe(dark); // kept: one read for every frame after
    const once = reads;
    theme.forget(); // the theme changed
    expect(theme.get()).not.toBe(dark);
    expect(reads).toBeGreaterThan(once);
    el.remove();
  });
});
