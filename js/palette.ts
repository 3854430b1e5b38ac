// The canvas's colours and fonts, read from the theme: the same --gs-* custom properties that
// widget.css derives from JupyterLab's (or VS Code's, or marimo's) variables, resolved by the browser
// through a hidden probe so that var() fallbacks and color-mix() end up as plain colours a 2D context
// understands. Read only once the element is in the page: a detached element resolves no host
// variable, and anywidget renders into one before the notebook attaches it (see ThemePalette).
// Re-read when the theme changes: JupyterLab flips data-jp-theme-* attributes on <body>,
// VS Code data-vscode-theme-kind, marimo the classes `dark dark-theme` / `light light-theme` and
// data-theme on <body>.

export interface Palette {
  bg: string;
  bg2: string;
  fg: string;
  fg2: string;
  border: string;
  border2: string;
  brand: string;
  brandBg: string;
  leaf: string;
  leafBg: string;
  warn: string;
  error: string;
  errorBg: string;
  nodeBg: string;
  edge: string;
  font: string;
  mono: string;
}

/** Fixed light colours: what the CSS falls back to, and what jsdom (no CSS variables) gets. */
export const DEFAULT_PALETTE: Palette = {
  bg: "#ffffff",
  bg2: "#f3f3f3",
  fg: "#1f1f1f",
  fg2: "#616161",
  border: "#bdbdbd",
  border2: "#e0e0e0",
  brand: "#1976d2",
  brandBg: "#e3f2fd",
  leaf: "#388e3c",
  leafBg: "#d7f0d8",
  warn: "#f57c00",
  error: "#d32f2f",
  errorBg: "#ffcdd2",
  nodeBg: "#ffffff",
  edge: "#9e9e9e",
  font: "system-ui, -apple-system, 'Segoe UI', sans-serif",
  mono: "ui-monospace, Menlo, Consolas, monospace",
};

const COLOURS: [keyof Palette, string][] = [
  ["bg", "--gs-bg"],
  ["bg2", "--gs-bg2"],
  ["fg", "--gs-fg"],
  ["fg2", "--gs-fg2"],
  ["border", "--gs-border"],
  ["border2", "--gs-border2"],
  ["brand", "--gs-brand"],
  ["brandBg", "--gs-brand-bg"],
  ["leaf", "--gs-leaf"],
  ["leafBg", "--gs-leaf-bg"],
  ["warn", "--gs-warn"],
  ["error", "--gs-error"],
  ["errorBg", "--gs-error-bg"],
  ["nodeBg", "--gs-node-bg"],
  ["edge", "--gs-edge"],
];

function usable(v: string): boolean {
  return v !== "" && !v.includes("var(");
}

/** The palette under `el` (which must be inside `.gradsight` and attached for real colours). */
export function readPalette(el: HTMLElement): Palette {
  if (typeof getComputedStyle !== "function" || !el.isConnected) return { ...DEFAULT_PALETTE };
  const probes = COLOURS.map(([, variable]) => {
    const probe = document.createElement("span");
    probe.hidden = true;
    probe.style.setProperty("color", `var(${variable})`);
    el.append(probe);
    return probe;
  });
  const palette: Palette = { ...DEFAULT_PALETTE };
  COLOURS.forEach(([key], i) => {
    const probe = probes[i] as HTMLElement;
    const v = getComputedStyle(probe).color.trim();
    if (usable(v)) palette[key] = v;
    probe.remove();
  });
  const style = getComputedStyle(el);
  const font = style.getPropertyValue("--gs-font").trim();
  const mono = style.getPropertyValue("--gs-mono").trim();
  if (usable(font)) palette.font = font;
  if (usable(mono)) palette.mono = mono;
  return palette;
}

/**
 * The palette of one element, kept between frames. What a detached element reads (the light
 * defaults) is never kept: each `get()` reads again until the element is in the page, so a view
 * rendered while detached in an already dark notebook is drawn dark from its first frame there.
 *
 *     const theme = new ThemePalette(el);
 *     theme.get(); // DEFAULT_PALETTE while el is detached; the host's colours once attached
 *     theme.forget(); // the theme changed: the next get() reads again
 */
export class ThemePalette {
  private kept: Palette | null = null;

  constructor(private readonly el: HTMLElement) {}

  get(): Palette {
    if (this.kept) return this.kept;
    // The same object each time while detached, so that callers comparing palettes redraw nothing.
    if (!this.el.isConnected) return DEFAULT_PALETTE;
    this.kept = readPalette(this.el);
    return this.kept;
  }

  forget(): void {
    this.kept = null;
  }
}

/** Call `fn` when the notebook's theme changes; returns the function that stops watching. */
export function watchTheme(fn: () => void): () => void {
  if (typeof MutationObserver === "undefined" || typeof document === "undefined" || !document.body) return () => {};
  const observer = new MutationObserver(() => fn());
  const attributeFilter = [
    "class",
    "style",
    "data-jp-theme-light",
    "data-jp-theme-name",
    "data-vscode-theme-kind",
    "data-theme",
  ];
  observer.observe(document.body, { attributes: true, attributeFilter });
  observer.observe(document.documentElement, { attributes: true, attributeFilter });
  return () => observer.disconnect();
}
