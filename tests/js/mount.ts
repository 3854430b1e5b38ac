// Mounting the widget in jsdom for the view tests: render into a fresh element in the document,
// and clean every mounted view up after each test (its cleanup must leave no handlers behind).

import widget from "../../js/widget";
import { type FakeModel, fakeModel } from "./fake-model";
import { sampleGraph } from "./fixtures";

export interface Mounted {
  model: FakeModel;
  el: HTMLElement;
  cleanup: () => void;
}

const mounted: Mounted[] = [];

export function mount(graph: unknown = sampleGraph(), extra: Partial<Parameters<typeof fakeModel>[0]> = {}): Mounted {
  const model = fakeModel({ graph, ...extra });
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = widget.render({ model, el });
  const m = { model, el, cleanup };
  mounted.push(m);
  return m;
}

/** The hooks of a test file that mounts views: no 2D canvas in jsdom (the view must cope with null),
 * and every view, timer and mock undone after each test. */
export function useMountedViews(): void {
  beforeEach(() => {
    vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
  });
  afterEach(() => {
    unmountAll();
    vi.useRealTimers();
    vi.restoreAllMocks();
  });
}

export function unmountAll(): void {
  for (const m of mounted.splice(0)) {
    m.cleanup();
    m.el.remove();
  }
}

export function q<E extends Element = HTMLElement>(el: ParentNode, selector: string): E {
  const found = el.querySelector<E>(selector);
  if (!found) throw new Error(`nothing matches ${selector}`);
  return found;
}

export const nodeEl = (el: HTMLElement, id: string): SVGGElement =>
  q<SVGGElement>(el, `.gs-node[data-node-id="${id}"]`);
export const inspector = (el: HTMLElement): HTMLElement => q(el, '[data-gradsight="inspector"]');

export function click(target: Element): void {
  target.dispatchEvent(new MouseEvent("click", { bubbles: true }));
}

/** A keydown from `target`, as the browser dispatches it (`Shift+M`, `Control+s`: with modifiers). */
export function pressKey(target: Element, spec: string): KeyboardEvent {
  const parts = spec.length > 1 && spec.includes("+") ? spec.split("+") : [spec];
  const key = parts.pop() as string;
  const e = new KeyboardEvent("keydown", {
    key,
    bubbles: true,
    cancelable: true,
    composed: true,
    shiftKey: parts.includes("Shift"),
    ctrlKey: parts.includes("Control"),
    altKey: parts.includes("Alt"),
  });
  target.dispatchEvent(e);
  return e;
}

/**
 * Which of ``keys`` a host's shortcuts (Lumino, listening on `document`) would take from ``target``:
 * Lumino skips an event whose default was already prevented, or whose target (or an ancestor)
 * carries `data-lm-suppress-shortcuts`. In the capture phase a matched binding also stops the key.
 */
function keysTaken(target: Element, keys: readonly string[], capture: boolean): string[] {
  const taken: string[] = [];
  for (const spec of keys) {
    const seen = (e: Event) => {
      const optedOut = e.target instanceof Element && e.target.closest("[data-lm-suppress-shortcuts]") !== null;
      if (!e.defaultPrevented && !optedOut) taken.push(spec);
      if (capture) e.stopPropagation(); // a binding matched: nothing below sees the key
    };
    document.addEventListener("keydown", seen, capture);
    pressKey(target, spec);
    document.removeEventListener("keydown", seen, capture);
  }
  return taken;
}

/**
 * Which of ``keys`` Notebook 7 would take from ``target``: it runs Jupyter's shortcuts (Lumino) in
 * the capture phase on `document`. A key is written ``Shift+Enter`` / ``Control+s`` for modifiers.
 */
export function keysNotebookTakes(target: Element, keys: readonly string[]): string[] {
  return keysTaken(target, keys, true);
}

/** Which of ``keys`` JupyterLab would take from ``target``: Lumino in the bubble phase on `document`. */
export function keysLabTakes(target: Element, keys: readonly string[]): string[] {
  return keysTaken(target, keys, false);
}
