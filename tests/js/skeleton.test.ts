// @vitest-environment jsdom
/// <reference types="vite/client" />
// The binary skeleton of big graphs: the golden written by Python (tests/golden/skeleton, buffers
// base64-encoded) decodes to the ids Python expects, a JS encoding of the same shape round-trips,
// malformed columns fail loudly, and the inspector fills a light node from the reply's `detail`.

import { indexGraph } from "../../js/graph-index";
import { parseShapeText } from "../../js/skeleton";
import { parseGraph, WireError } from "../../js/wire";
import { encodeSkeleton, fromBase64, skeletonGraph, transformerGraph } from "./big-graphs";
import { ADD, LEAF, MUL, node, SIN, sampleGraph } from "./fixtures";
import { inspector, mount, q, unmountAll } from "./mount";

const files = import.meta.glob<Record<string, unknown>>("../golden/skeleton/*.json", {
  eager: true,
  import: "default",
});
const cases = Object.entries(files).map(([path, data]) => [path.replace("../golden/skeleton/", ""), data] as const);

const COLUMNS = [
  "name",
  "module",
  "leaf",
  "variable",
  "shape",
  "rank",
  "kind",
  "flags",
  "grad_norm",
  "edge_offsets",
  "edge_targets",
  "edge_input_nr",
];

/** The golden with its base64 columns turned into DataViews, as anywidget delivers buffers. */
function decoded(data: Record<string, unknown>): Record<string, unknown> {
  const sk = { ...(data.skeleton as Record<string, unknown>) };
  for (const c of COLUMNS) sk[c] = fromBase64(sk[c] as string);
  return { ...data, skeleton: sk };
}

/** Python names a named leaf `leaf:<name>`; the hand-written sample keeps `AccumulateGrad#0`. */
const LEAF_ID = "leaf:input1";

function pythonSample() {
  const g = sampleGraph();
  g.nodes = g.nodes.map((n) => ({
    ...n,
    id: n.id === LEAF ? LEAF_ID : n.id,
    next: n.next.map(([t, nr]): [string | null, number] => [t === LEAF ? LEAF_ID : t, nr]),
  }));
  return g;
}

beforeEach(() => {
  vi.spyOn(HTMLCanvasElement.prototype, "getContext").mockReturnValue(null);
});

afterEach(() => {
  unmountAll();
  vi.restoreAllMocks();
});

it("finds skeleton goldens (written by the Python tests)", () => {
  expect(cases.length, "tests/golden/skeleton/*.json is empty: run the Python tests first").toBeGreaterThan(0);
});

describe.each(cases)("golden %s", (_name, data) => {
  it("rebuilds exactly the ids Python expects", () => {
    const graph = parseGraph(decoded(data));
    expect(graph.skeleton?.ids).toEqual(data.expected_ids);
    expect(graph.nodes.map((n) => n.id)).toEqual(data.expected_ids);
    for (const r of graph.roots) expect(graph.nodes.some((n) => n.id === r)).toBe(true);
  });

  it("decodes names, kinds and edges from the columns", () => {
    const graph = parseGraph(decoded(data));
    const sk = graph.skeleton;
    if (!sk) throw new Error("no skeleton");
    graph.nodes.forEach((n, i) => {
      expect(n.name).toBe(sk.strings[sk.name[i] as number]);
      const start = sk.edgeOffsets[i] as number;
      const end = sk.edgeOffsets[i + 1] as number;
      expect(n.next).toHaveLength(end - start);
      n.next.forEach(([target, nr], k) => {
        const t = sk.edgeTargets[start + k] as number;
        expect(target).toBe(t < 0 ? null : sk.ids[t]);
        expect(nr).toBe(sk.edgeInputNr[start + k]);
      });
      if (n.kind === "leaf") expect(n.leaf).not.toBeNull();
    });
    const ids = new Set(graph.nodes.map((n) => n.id));
    for (const n of graph.nodes) for (const [t] of n.next) if (t !== null) expect(ids.has(t)).toBe(true);
  });

  it("indexes into the same graph the view groups and lays out", () => {
    const graph = parseGraph(decoded(data));
    const ix = indexGraph(graph);
    expect(ix.count).toBe(graph.nodes.length);
    expect(ix.ids).toEqual(data.expected_ids);
    expect(ix.roots.map((r) => ix.ids[r])).toEqual(graph.roots);
  });
});

describe("skeleton decoding", () => {
  it("round-trips a graph encoded like schema.py does, modules and leaves included", () => {
    const graph = transformerGraph(3);
    graph.nodes[1] = { ...(graph.nodes[1] as (typeof graph.nodes)[number]), variable: "out", grad_norm: 2.5 };
    const back = parseGraph(skeletonGraph(graph.nodes));
    expect(back.nodes.map((n) => n.id)).toEqual(graph.nodes.map((n) => n.id));
    expect(back.nodes.map((n) => n.next)).toEqual(graph.nodes.map((n) => n.next));
    expect(back.nodes.map((n) => n.module)).toEqual(graph.nodes.map((n) => n.module));
    expect(back.nodes[1]?.variable).toBe("out");
    expect(back.nodes[1]?.grad_norm).toBe(2.5);
    const leaf = back.nodes.find((n) => n.kind === "leaf");
    expect(leaf?.id).toBe(`leaf:${leaf?.leaf?.name}`);
  });

  it("names leaves leaf:<name>, unnamed ones after their op, with the rank suffix", () => {
    const graph = parseGraph(skeletonGraph(pythonSample().nodes));
    expect(graph.nodes.map((n) => n.id)).toEqual([ADD, MUL, SIN, LEAF_ID]);
    expect(graph.nodes[3]?.leaf?.name).toBe("input1");
    const unnamed = sampleGraph().nodes.map((n) => (n.leaf ? { ...n, leaf: { ...n.leaf, name: null } } : n));
    expect(parseGraph(skeletonGraph(unnamed)).nodes[3]?.id).toBe("AccumulateGrad#0");
  });

  it("accepts typed arrays and ArrayBuffers as well as DataViews", () => {
    const raw = skeletonGraph(sampleGraph().nodes);
    const sk = raw.skeleton as Record<string, DataView>;
    sk.kind = new Uint8Array((sk.kind as DataView).buffer) as unknown as DataView;
    sk.name = (sk.name as DataView).buffer as unknown as DataView;
    expect(parseGraph(raw).nodes).toHaveLength(4);
  });

  it("says which column is malformed", () => {
    const bad = (edit: (sk: Record<string, unknown>) => void): (() => unknown) => {
      const raw = skeletonGraph(sampleGraph().nodes);
      edit(raw.skeleton as Record<string, unknown>);
      return () => parseGraph(raw);
    };
    expect(bad((sk) => (sk.name = new DataView(new ArrayBuffer(3))))).toThrow(/skeleton\.name has 3 bytes/);
    expect(bad((sk) => (sk.kind = "AAAA"))).toThrow(/skeleton\.kind should be a binary buffer/);
    expect(
      bad((sk) => {
        (sk.edge_targets as DataView).setInt32(0, 99, true);
      }),
    ).toThrow(/edge_targets\[0\] is 99/);
    expect(bad((sk) => (sk.strings = []))).toThrow(WireError);
    expect(bad((sk) => (sk.count = -1))).toThrow(/count/);
  });

  it("refuses duplicate rebuilt ids and roots that are not nodes", () => {
    const twin = [node("MulBackward0#0"), node("MulBackward0#0")];
    expect(() => parseGraph(skeletonGraph(twin))).toThrow(/duplicate node id/);
    expect(() => parseGraph(skeletonGraph(sampleGraph().nodes, ["nope"]))).toThrow(/root nope/);
  });

  it("reads shapes back from their text", () => {
    expect(parseShapeText("(16, 10)")).toEqual([16, 10]);
    expect(parseShapeText("(25,)")).toEqual([25]);
    expect(parseShapeText("()")).toEqual([]);
    expect(parseShapeText("(s0, 3)")).toEqual([]);
  });

  it("keeps the skeleton's columns cheap: 50,000 nodes decode in well under a second", () => {
    const big = transformerGraph(2);
    const nodes = Array.from({ length: 50_000 }, (_, i) =>
      node(`m${i % 50}/MulBackward0#${Math.floor(i / 50)}`, {
        name: "MulBackward0",
        module: `m${i % 50}`,
        next: i + 1 < 50_000 ? [[`m${(i + 1) % 50}/MulBackward0#${Math.floor((i + 1) / 50)}`, 0]] : [],
      }),
    );
    const raw = { ...skeletonGraph(big.nodes), skeleton: encodeSkeleton(nodes), roots: [nodes[0]?.id] };
    const start = performance.now();
    const graph = parseGraph(raw);
    expect(graph.nodes).toHaveLength(50_000);
    expect(performance.now() - start).toBeLessThan(3000);
  });
});

describe("inspecting a node of a skeleton graph", () => {
  it("shows identity and edges at once, and the sections from the reply's detail", () => {
    const full = pythonSample();
    const { el, model } = mount(skeletonGraph(full.nodes));
    model.pySet("selected", SIN);
    const panel = inspector(el);
    expect(panel.getAttribute("data-node")).toBe(SIN);
    expect(q(panel, '[data-detail="pending"]')).toBeTruthy();
    expect(panel.querySelector('[data-section="saved"]')).toBeNull();
    expect(panel.querySelector('[data-section="edges"]')).not.toBeNull();
    const detail = full.nodes.find((n) => n.id === SIN);
    model.pyReply("inspect", { node: SIN, tensors: [], history: [], why: null, detail });
    expect(panel.querySelector('[data-detail="pending"]')).toBeNull();
    expect(panel.querySelectorAll('[data-section="saved"] [data-saved-name="_saved_self"]')).toHaveLength(1);
    expect(panel.getAttribute("data-inspect-status")).toBe("done");
  });

  it("shows a leaf's section once its detail arrives", () => {
    const full = pythonSample();
    const { el, model } = mount(skeletonGraph(full.nodes));
    model.pySet("selected", LEAF_ID);
    expect(inspector(el).querySelector('[data-section="leaf"]')).toBeNull();
    const detail = full.nodes.find((n) => n.id === LEAF_ID);
    model.pyReply("inspect", { node: LEAF_ID, tensors: [], history: [], why: null, detail });
    expect(inspector(el).querySelector('[data-section="leaf"]')).not.toBeNull();
  });
});
