// The keys a focused gradsight element handles itself, claimed before the notebook sees them.
//
// Jupyter's shortcuts (Lumino) skip a key event whose default was prevented. JupyterLab handles
// them in the bubble phase, after the view's own handlers (which prevent the default of the keys
// they use); Notebook 7 handles them in the capture phase on `document`, before — so in command
// mode its `notebook:move-cursor-*` bindings took the arrow keys from a focused graph node and
// moved the active cell. One capture listener on `window` (which runs before `document`'s)
// prevents the default of exactly the unmodified keys the focused element claims; its own handler
// then runs as usual. A <select> changes its value on the arrow keys by default, so for it the
// listener instead marks the select with Lumino's own opt-out (`data-lm-suppress-shortcuts`) until
// the key has been dispatched. Every other key — Shift+Enter, Ctrl+S, Escape on a graph node — still
// reaches the notebook. The listener is installed once per page and is never removed (it does
// nothing unless the key's target is a gradsight element that claims it).

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
  if (!installed && typeof window !== "undefined") {
    window.addEventListener("keydown", claimKey, true);
    installed = true;
  }
  return { [KEYS_ATTR]: claim };
}

/** Makes ``el`` claim ``claim``'s keys (for elements not built with ``h`` / ``s``). */
export function claimKeys(el: Element, claim: Claim): void {
  for (const [name, value] of Object.entries(ownsKeys(claim))) el.setAttribute(name, String(value));
}

/** A key pressed without Shift, Ctrl, Alt or Meta: only those are the view's (the rest are the host's). */
export function plainKey(e: KeyboardEvent): boolean {
  return !(e.shiftKey || e.ctrlKey || e.altKey || e.metaKey);
}

let optedOut: Element | null = null; // the select marked for the key being dispatched

function claimKey(e: KeyboardEvent): void {
  if (optedOut !== null) {
    optedOut.removeAttribute(LUMINO_OPT_OUT); // the previous key's mark, if its timeout has not run yet
    optedOut = null;
  }
  if (e.defaultPrevented || !plainKey(e)) return;
  const target = e.composedPath()[0]; // the focused element itself, also inside a shadow root
  if (!(target instanceof Element)) return;
  const claim = target.getAttribute(KEYS_ATTR);
  if (claim === null || !(claim in CLAIMS) || !CLAIMS[claim as Claim].includes(e.key)) return;
  if (claim !== "native arrows") {
    e.preventDefault();
  } else if (!target.hasAttribute(LUMINO_OPT_OUT)) {
    target.setAttribute(LUMINO_OPT_OUT, "true"); // for this key only: Shift+Enter on a select still runs the cell
    optedOut = target;
    setTimeout(() => {
      if (optedOut === target) {
        target.removeAttribute(LUMINO_OPT_OUT);
        optedOut = null;
      }
    }, 0);
  }
}
