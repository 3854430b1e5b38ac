// The layout Worker's bundled source. Empty here, so type checks and unit tests (jsdom has no
// Worker anyway) run the layout on the main thread; `npm run build` (js/build.mjs) replaces this
// module with the text of js/layout-worker.ts bundled on its own, which layout-client.ts starts
// from a Blob URL.

export const LAYOUT_WORKER_SOURCE = "";
