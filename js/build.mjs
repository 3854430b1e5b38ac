// `npm run build` (and `npm run dev`): bundles the view into src/gradsight/static. The layout
// Worker (js/layout-worker.ts) is bundled first, on its own, and its text replaces the empty
// placeholder module js/worker-source.ts inside the main bundle, which starts it from a Blob URL
// (layout-client.ts). Nothing is written besides the two static files: no generated sources.
//   node js/build.mjs          minified build
//   node js/build.mjs --dev    unminified, inline source maps, rebuilt on change

import * as esbuild from "esbuild";

const dev = process.argv.includes("--dev");
const common = { bundle: true, target: "es2020", logLevel: "warning", minify: !dev };

/** The worker bundle as text, and the files it was built from (for watch mode). */
async function workerSource() {
  const result = await esbuild.build({
    ...common,
    entryPoints: ["js/layout-worker.ts"],
    format: "iife",
    write: false,
    metafile: true,
    sourcemap: dev ? "inline" : false,
  });
  const [file] = result.outputFiles;
  return { text: file.text, inputs: Object.keys(result.metafile.inputs) };
}

const workerPlugin = {
  name: "gradsight-layout-worker",
  setup(build) {
    build.onResolve({ filter: /^\.\/worker-source$/ }, (args) => ({
      path: args.path,
      namespace: "gradsight-worker",
      pluginData: args.resolveDir,
    }));
    build.onLoad({ filter: /.*/, namespace: "gradsight-worker" }, async () => {
      const { text, inputs } = await workerSource();
      return {
        contents: `export const LAYOUT_WORKER_SOURCE = ${JSON.stringify(text)};`,
        loader: "js",
        watchFiles: inputs,
      };
    });
  },
};

const view = {
  ...common,
  entryPoints: ["js/widget.ts"],
  format: "esm",
  outfile: "src/gradsight/static/widget.js",
  sourcemap: dev ? "inline" : false,
  plugins: [workerPlugin],
};
const css = { ...common, entryPoints: ["js/widget.css"], outfile: "src/gradsight/static/widget.css" };

if (dev) {
  const contexts = [await esbuild.context(view), await esbuild.context(css)];
  await Promise.all(contexts.map((c) => c.watch()));
} else {
  await Promise.all([esbuild.build(view), esbuild.build(css)]);
}
