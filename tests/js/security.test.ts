/// <reference types="vite/client" />
// A source-level guard for DESIGN §6: the view never parses HTML, so nothing from the user's
// program (names, module paths, reprs, errors) can become markup. The DOM test in widget.test.ts
// checks the behaviour; this one stops an innerHTML from slipping into any module later.

const sources = import.meta.glob<string>("../../js/**/*.ts", { query: "?raw", import: "default", eager: true });

it("finds the view's sources", () => {
  expect(Object.keys(sources).length).toBeGreaterThan(5);
});

it.each(Object.entries(sources))("%s parses no HTML", (_path, text) => {
  expect(text).not.toMatch(
    /\.(inner|outer)HTML\s*=|insertAdjacentHTML\s*\(|document\.write|createContextualFragment|DOMParser/,
  );
});
