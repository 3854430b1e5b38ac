// Entry point of the gradsight view, bundled by esbuild into src/gradsight/static/widget.js and
// loaded by anywidget as the Debugger's `_esm`. render() builds one view per display of the widget
// and returns its cleanup, which removes every listener it added (anywidget calls it on removal).

import type { RenderProps } from "@anywidget/types";
import type { Traits } from "./model";
import { GradsightView } from "./view";

function render({ model, el }: Pick<RenderProps<Traits>, "model" | "el">): () => void {
  const view = new GradsightView(model, el);
  return () => view.destroy();
}

export default { render };
