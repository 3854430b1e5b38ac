// Safe DOM builders. Everything gradsight shows comes from the user's program (module paths,
// variable names, reprs, file paths), so it is inserted only as text nodes and attribute values:
// nothing in the view parses HTML (no innerHTML / insertAdjacentHTML), see DESIGN §6. A name (a
// node, leaf, module or variable name, an id, a source line) placed beside other text sits in its
// own <bdi>: a right-to-left override (U+202E) or RTL script in it then cannot reorder the text
// around it (the browser's own stylesheet isolates <bdi>, whatever the host's CSS does).

export type Child = Node | string | null | undefined | false;
export type Attrs = Record<string, string | number | boolean | null | undefined>;

const SVG_NS = "http://www.w3.org/2000/svg";

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
