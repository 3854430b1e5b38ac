// The keys a focused gradsight element handles itself, claimed before the notebook sees them, and
// the keys the notebook must not see at all when they come from inside the view.
//
// Jupyter's shortcuts (Lumino) skip a key event whose default was prevented, or whose target (or an
// ancestor, up to where the listener sits) carries `data-lm-suppress-shortcuts`. JupyterLab handles
// them in the bubble phase on `document`, after the view's own handlers; Notebook 7 in the capture
// phase, before — so in command mode its `notebook:move-cursor-*` bindings took the arrow keys from
// a focused graph node and moved the active cell. One capture listener on `window` (which runs
// before `document`'s) does two things:
// - it prevents the default of exactly the unmodified keys the focused element claims (arrows on a
//   graph node, which would otherwise scroll the page); its own handler then runs as usual;
// - every other key pressed inside the view (`.gradsight`) — letters, digits, Enter, Space, Shift
//   with a letter — is kept from the notebook's command mode without preventing its default (a
//   button's Enter still clicks, the search box still types): the key's target carries Lumino's
//   opt-out until the key has been dispatched. "d d" on a focused node deleted the cell, "m" turned
//   it into Markdown. A select's arrows are handled this way too (their default moves the value).
// Keys the notebook keeps from inside the view (`hostKey`): any key with Ctrl, Alt or Meta (save,
// run, the command palette), Shift+Enter (run the cell and move on), Escape (back to the notebook;
// the preview and the search results claim it for themselves) and Tab (focus moves on).
// For hosts whose shortcuts are not Lumino's but listen in the bubble phase (`guardKeys`), the view's
// root stops the propagation of the same keys. The window listener is installed once per page and
// never removed (it does nothing unless the key's target is inside a gradsight view).

import type { Attrs } from "./dom";

export const KEYS_ATTR = "data-gs-keys";
const LUMINO_OPT_OUT = "data-lm-suppress-shortcuts";

const ARROWS = ["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight"];
const CLAIMS = {
  /** Outline and search-result buttons (Enter and Space stay the button's own: a click). */
  arrows: ARROWS,
  /** Graph nodes and the graph canvas: arrows move the cursor, Enter / Space select. */
  "arrows enter": [...ARROWS, "Enter", " "],
  /** The value preview (arrows move the cursor cell, Escape hides it) and search results (arrows
   * move between hits, Escape goes back to the input). */
  "arrows escape": [...ARROWS, "Escape"],
  /** Selects (layout direction, run history): the arrows are the browser's own, so not prevented. */
  "native arrows": ARROWS,
} satisfies Record<string, readonly string[]>;
export type Claim = keyof typeof CLAIMS;

let installed = false;

/** Attributes that make a focusable element claim ``claim``'s keys (see the header). */
export function ownsKeys(claim: Claim): Attrs {
  install();
  return { [KEYS_ATTR]: claim };
}

/** Makes ``el`` claim ``claim``'s keys (for elements not built with ``h`` / ``s``). */
export function claimKeys(el: Element, claim: Claim): void {
  for (const [name, value] of Object.entries(ownsKeys(claim))) el.setAttribute(name, String(value));
}

/** A key pressed without Shift, Ctrl, Alt or Meta: only those are claimed and handled by the view. */
export function plainKey(e: KeyboardEvent): boolean {
  return !(e.shiftKey || e.ctrlKey || e.altKey || e.metaKey);
}

/** A key the notebook keeps even when pressed inside the view (see the header). */
export function hostKey(e: KeyboardEvent): boolean {
  return (
    e.ctrlKey || e.altKey || e.metaKey || e.key === "Escape" || e.key === "Tab" || (e.key === "Enter" && e.shiftKey)
  );
}

/**
 * Keeps the keys pressed inside `root` from the host's bubble-phase listeners (see the header);
 * returns the cleanup. Also installs the window listener, for views that claim no key themselves.
 */
export function guardKeys(root: HTMLElement): () => void {
  install();
  const stop = (e: Event): void => {
    if (e instanceof KeyboardEvent && !hostKey(e)) e.stopPropagation();
  };
  root.addEventListener("keydown", stop);
  return () => root.removeEventListener("keydown", stop);
}

const ROOT_CLASS = "gradsight";

function claims(claim: string): readonly string[] {
  return Object.hasOwn(CLAIMS, claim) ? CLAIMS[claim as Claim] : [];
}
let optedOut: Element | null = null; // the element marked for the key being dispatched

function install(): void {
  if (!installed && typeof window !== "undefined") {
    window.addEventListener("keydown", claimKey, true);
    installed = true;
  }
}

function claimKey(e: KeyboardEvent): void {
  if (optedOut !== null) {
    optedOut.removeAttribute(LUMINO_OPT_OUT); // the previous key's mark, if its timeout has not run yet
    optedOut = null;
  }
  if (e.defaultPrevented) return;
  const path = e.composedPath();
  const target = path[0]; // the focused element itself, also inside a shadow root
  if (!(target instanceof Element)) return;
  const claim = target.getAttribute(KEYS_ATTR);
  if (plainKey(e) && claim !== null && claim !== "native arrows" && claims(claim).includes(e.key)) {
    e.preventDefault();
    return;
  }
  if (hostKey(e) || !path.some((n) => n instanceof Element && n.classList.contains(ROOT_CLASS))) return;
  // Lumino reads `event.target` (the shadow host, when the view sits in a shadow root).
  const marked = e.target instanceof Element ? e.target : target;
  if (marked.hasAttribute(LUMINO_OPT_OUT)) return;
  marked.setAttribute(LUMINO_OPT_OUT, "true"); // for this key only: Shift+Enter after it still runs the cell
  optedOut = marked;
  setTimeout(() => {
    if (optedOut === marked) {
      marked.removeAttribute(LUMINO_OPT_OUT);
      optedOut = null;
    }
  }, 0);
}
