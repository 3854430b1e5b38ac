// @vitest-environment jsdom
/// <reference types="vite/client" />
// Golden wire snapshots written by the Python tests (tests/golden/*.json, `pytest --update-goldens`)
// must pass the TypeScript guard and render: drift between schema.py and wire.ts fails here.

import { computeLayout } from "../../js/layout";
import { layoutInput, nodeLabel } from "../../js/node-label";
import widget from "../../js/widget";
import { parseGraph, SCHEMA_VERSION, type WireGraph } from "../../js/wire";
import { fakeModel } from "./fake-model";

// Vite reads the directory at test time; an empty glob is an error below, never a vacuous pass.
const files = import.meta.glob<unknown>("../golden/*.json", { eager: true, import: "default" });
const cases = Object.entries(files).map(([path, data]) => [path.replace("../golden/", ""), data] as const);

it("finds golden wire snapshots (written by the Python tests)", () => {
  expect(cases.length, "tests/golden/*.json is empty: run the Python tests first (pytest)").toBeGreaterThan(0);
});

describe.each(cases)("%s", (_name, data) => {
  let graph: WireGraph;

  beforeAll(() => {
    graph = parseGraph(data);
  });

  it("decodes the same graph when it arrives packed in one buffer (schema.graph_transport)", () => {
    const bytes = new TextEncoder().encode(JSON.stringify(data));
    const version = (data as { schema_version: number }).schema_version;
    const packed = { schema_version: version, packed: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
    expect(parseGraph(packed)).toEqual(graph);
  });

  it("has roots that are nodes, or a message explaining why there are none", () => {
    if (graph.nodes.length === 0) {
      expect(graph.message).toBeTruthy();
      return;
    }
    expect(graph.roots.length).toBeGreaterThan(0);
    const ids = new Set(graph.nodes.map((n) => n.id));
    for (const r of graph.roots) expect(ids.has(r)).toBe(true);
  });

  it("gives every node a label, and every leaf its leaf info", () => {
    for (const n of graph.nodes) {
      expect(n.label.trim(), n.id).not.toBe("");
      expect(nodeLabel(n).lines.length).toBeGreaterThan(0);
      if (n.kind === "leaf") expect(n.leaf, n.id).not.toBeNull();
    }
  });

  it("lays out with every edge pointing toward the leaves", () => {
    const labels = new Map(graph.nodes.map((n) => [n.id, nodeLabel(n)]));
    const layout = computeLayout(layoutInput(graph, labels));
    const layer = new Map(layout.nodes.map((p) => [p.id, p.layer]));
    for (const r of graph.roots) expect(layer.get(r)).toBe(0);
    for (const e of layout.edges) expect(layer.get(e.to) ?? 0).toBeGreaterThan(layer.get(e.from) ?? 0);
  });

  it("renders, and every node can be inspected without an error", () => {
    const model = fakeModel({ graph: data });
    const el = document.createElement("div");
    const cleanup = widget.render({ model, el });
    expect(el.querySelectorAll(".gs-node")).toHaveLength(graph.nodes.length);
    for (const n of graph.nodes) {
      model.pySet("selected", n.id);
      const inspector = el.querySelector('[data-gradsight="inspector"]');
      expect(inspector?.getAttribute("data-node")).toBe(n.id);
      expect(inspector?.querySelectorAll('[data-section="saved"] [data-saved-name]')).toHaveLength(n.saved.length);
      expect(inspector?.querySelector('[data-section="leaf"]') !== null).toBe(n.leaf !== null);
    }
    expect(el.querySelector<HTMLElement>('[data-gradsight="error"]')?.hidden).toBe(true);
    cleanup();
  });
});

it("explains a packed graph whose buffer is not JSON", () => {
  const junk = new TextEncoder().encode("{not json");
  expect(() => parseGraph({ schema_version: SCHEMA_VERSION, packed: new DataView(junk.buffer) })).toThrow(
    /graph.packed is not JSON/,
  );
  expect(() => parseGraph({ schema_version: SCHEMA_VERSION, packed: "text" })).toThrow(/not a binary buffer/);
});
