// Why a leaf's .grad is None or zero (a WireWhy from Python) as DOM, shared by the inspector's
// [data-section="why"] and the missing-gradient list: the message, the reason in words, the source
// line of the break and, when the break is a node of the graph shown, a link to it
// (button[data-goto-node], handled like the inspector's edge links: a click selects the node).

import { h } from "./dom";
import type { WhyReason, WireWhy } from "./wire";

export const REASON_TEXT: Record<WhyReason, string> = {
  requires_grad_false: "requires_grad is False",
  detach: "the path was detached",
  no_grad: "computed under torch.no_grad()",
  inference_mode: "computed under torch.inference_mode()",
  non_differentiable: "a non-differentiable op on the path",
  data: "used through .data (invisible to autograd)",
  not_on_path: "not on the path from the root",
  unused: "not used by the forward",
  freed: "the graph was freed by an earlier backward",
  zero: "the gradient is all zeros",
  nonfinite: "the gradient has NaN or Inf",
  exploding: "the gradient is exploding",
  vanishing: "the gradient is vanishing",
  backward_error: "the backward raised before reaching it",
  unknown: "unknown",
};

/** `nodeName(id)`: the display name of a node of the graph shown, or null when it is not there. */
export function whyView(why: WireWhy, nodeName: (id: string) => string | null): HTMLElement {
  const where = why.where === null ? null : { id: why.where, name: nodeName(why.where) };
  return h(
    "div",
    { class: "gs-why", "data-why-reason": why.reason, "data-why-leaf": why.name },
    h("p", { class: "gs-why-message", "data-why": "message" }, why.message),
    h(
      "dl",
      { class: "gs-rows" },
      h("dt", {}, "reason"),
      h("dd", { "data-why": "reason" }, `${REASON_TEXT[why.reason]} (${why.reason})`),
      why.source === null ? null : h("dt", {}, "source"),
      why.source === null ? null : h("dd", { "data-why": "source" }, why.source),
      where === null ? null : h("dt", {}, "breaks at"),
      where === null
        ? null
        : h(
            "dd",
            { "data-why": "where" },
            where.name === null
              ? h("code", {}, h("bdi", {}, where.id))
              : h("button", { type: "button", class: "gs-link", "data-goto-node": where.id }, h("bdi", {}, where.name)),
          ),
    ),
  );
}
