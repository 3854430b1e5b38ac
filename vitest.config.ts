// vitest: the view's unit tests live in tests/js (jsdom is opted into per file).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/js/**/*.test.ts"],
    globals: true,
  },
});
