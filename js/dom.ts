// Safe DOM builders. Everything gradsight shows comes from the user's program (module paths,
// variable names, reprs, file paths), so it is inserted only as text nodes and attribute values:
// nothing in the view parses HTML (no innerHTML / insertAdjacentHTML), see DESIGN §6.

export type Child = Node | string | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | null | undefined>;

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Attributes of a focusable element that handles the arrow keys itself (graph nodes, the graph
 * canvas, the value preview, outline and search entries). Notebook 7 runs its key bindings in the
 * capture phase (JupyterLab in the bubble phase, after ours), so in command mode its
 * `notebook:move-cursor-*` bindings (selector `.jp-Notebook.jp-mod-commandMode … :focus`) took an
 * arrow key from a focused gradsight element before its handler saw it and moved to another cell.
 * Lumino matches no binding for a key event whose target carries this attribute.
 */
export const SUPPRESS_SHORTCUTS = "data-lm-suppress-shortcuts";
export const OWNS_KEYS: Attrs = { [SUPPRESS_SHORTCUTS]: "true" };

function fill<E extends Element>(node: E, attrs: Attrs, children: readonly Child[]): E {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** An HTML element with attributes and children; strings become text nodes. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element with attributes and children; strings become text nodes. */
export function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): SVGElementTagNameMap[K] {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace the text of `node` (a text node, never markup). */
export function setText(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}
