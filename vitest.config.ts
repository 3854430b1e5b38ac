// vitest: the view's unit tests live in tests/js (jsdom is opted into per file).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/js/**/*.test.ts"],
    globals: true,
    // widget.css as text (palette.test.ts imports it with ?raw); vitest empties other CSS
    css: { include: [/widget\.css/] },
  },
});
