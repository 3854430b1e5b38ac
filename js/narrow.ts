// Narrow views stack the inspector below the graph. "Narrow" is the view's own width, not the
// window's: notebook columns in marimo and VS Code are ~700 px in wide windows, where side by side
// the big view's outline (250 px) and the inspector (340 px) left its graph ~100 px. Not a CSS
// container query: size containment gives the view a zero content width wherever it is sized by
// its content (an ipywidgets HBox, inline-block, a table cell), and it collapsed to 2 px there.

export const NARROW_PX = 900;
/** A narrow view turns wide again only this much past NARROW_PX: a view sized by its content changes
 * width with its own layout, and must not flip between the two on every frame. */
export const HYSTERESIS_PX = 40;

/** Keeps class `gs-narrow` on `root` while its width is under `NARROW_PX`; returns the stopper. */
export function watchNarrow(root: HTMLElement): () => void {
  if (typeof ResizeObserver === "undefined") return () => {};
  let frame = 0;
  const apply = () => {
    frame = 0;
    const width = root.getBoundingClientRect().width;
    if (width === 0) return; // not laid out (a hidden tab): keep the class until it is
    const narrow = root.classList.contains("gs-narrow");
    root.classList.toggle("gs-narrow", width < (narrow ? NARROW_PX + HYSTERESIS_PX : NARROW_PX));
  };
  // Applied on the next frame, not in the callback: a class that changes the observed size inside
  // it makes the browser report "ResizeObserver loop completed with undelivered notifications".
  const observer = new ResizeObserver(() => {
    if (frame === 0) frame = requestAnimationFrame(apply);
  });
  observer.observe(root);
  return () => {
    observer.disconnect();
    if (frame !== 0) cancelAnimationFrame(frame);
  };
}
