// How the `graph` trait travels (schema.py: graph_transport). Skeleton graphs arrive as they are;
// JSON-node graphs arrive packed: {schema_version, packed: <UTF-8 JSON bytes>}, one binary buffer,
// because ipywidgets and the kernel would otherwise walk and re-encode every node on each publish.

/** The graph wire inside what the trait holds: packed graphs decoded, anything else unchanged. */
export function unpackGraph(x: unknown): unknown {
  if (x === null || typeof x !== "object" || !("packed" in x)) return x;
  const packed = (x as { packed: unknown }).packed;
  let bytes: Uint8Array;
  if (packed instanceof ArrayBuffer) bytes = new Uint8Array(packed);
  else if (ArrayBuffer.isView(packed)) bytes = new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
  else throw new TransportError("wire: graph.packed is not a binary buffer");
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch (e) {
    throw new TransportError(`wire: graph.packed is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

export class TransportError extends Error {}
