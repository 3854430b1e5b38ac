// Search over a big graph's nodes: op names, module paths, parameter / leaf names, variable names
// and ids, case-insensitive. Every word of the query must match some field; hits rank by how well
// (an exact name first, then a name prefix, a name substring, a module path, an id), then by graph
// order (roots first). Pure: the search box (search-box.ts) shows the results.

import type { GraphIndex } from "./graph-index";

export interface SearchResult {
  /** Node indices, best first, at most `limit`. */
  nodes: number[];
  /** How many nodes matched in all. */
  total: number;
}

interface Haystack {
  names: string[];
  modules: string[];
  ids: string[];
}

const haystacks = new WeakMap<GraphIndex, Haystack>();

function haystack(ix: GraphIndex): Haystack {
  let h = haystacks.get(ix);
  if (!h) {
    const names: string[] = [];
    for (let i = 0; i < ix.count; i++) {
      names.push(
        [ix.names[i], ix.leaves[i], ix.variables[i]]
          .filter((x) => x)
          .join("\u0001")
          .toLowerCase(),
      );
    }
    h = {
      names,
      modules: ix.modules.map((m) => (m ?? "").toLowerCase()),
      ids: ix.ids.map((id) => id.toLowerCase()),
    };
    haystacks.set(ix, h);
  }
  return h;
}

/** How well one word matches node i: 0 (exact name) … 4 (inside the id); -1: no match. */
function rank(h: Haystack, i: number, word: string): number {
  const names = h.names[i] as string;
  if (names.includes(word)) {
    for (const part of names.split("\u0001")) {
      if (part === word) return 0;
      if (part.startsWith(word)) return 1;
    }
    return 2;
  }
  if ((h.modules[i] as string).includes(word)) return 3;
  if ((h.ids[i] as string).includes(word)) return 4;
  return -1;
}

export function searchNodes(ix: GraphIndex, query: string, limit = 50): SearchResult {
  const words = query
    .toLowerCase()
    .split(/\s+/)
    .filter((w) => w !== "");
  if (words.length === 0) return { nodes: [], total: 0 };
  const h = haystack(ix);
  const hits: { i: number; score: number }[] = [];
  for (let i = 0; i < ix.count; i++) {
    let score = 0;
    for (const word of words) {
      const r = rank(h, i, word);
      if (r < 0) {
        score = -1;
        break;
      }
      score += r;
    }
    if (score >= 0) hits.push({ i, score });
  }
  hits.sort((a, b) => a.score - b.score || a.i - b.i);
  return { nodes: hits.slice(0, limit).map((x) => x.i), total: hits.length };
}
