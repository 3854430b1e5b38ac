"""%%gradsight cells: what-if toggles on the cell's own variables (walrus bindings, not a function's
locals), cells that do not compile, and why() in a cell (only breaks that reach the loss count)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance()
    sh.run_cell("import math, torch\nfrom torch import nn", store_history=False)
    sh.run_line_magic("load_ext", "gradsight")
    yield sh
    sh.run_line_magic("unload_ext", "gradsight")
    sh.reset(new_session=False)


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def leaf_names(graph: gs.Graph) -> list[str]:
    return sorted(n.leaf.name for n in graph.leaves if n.leaf and n.leaf.name)


# -- why() in a cell: only breaks on the way to the loss -----------------------------------------------


def test_why_in_a_cell_ignores_a_value_computed_under_no_grad_that_never_reaches_the_loss(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(
        "w_ok = torch.randn(3, requires_grad=True)\nw_ng = torch.randn(3, requires_grad=True)\n"
        "w_onlyng = torch.randn(3, requires_grad=True)\nw_det = torch.randn(3, requires_grad=True)",
        store_history=False,
    )
    body = (
        "with torch.no_grad():\n    t = w_ng * 3\n    u = w_onlyng * 2\n    n = w_det.norm()\n"
        "loss = (w_ok * 2).sum() + t.sum() + (w_det.detach() * 2).sum()\nloss.backward()"
    )
    dbg = run(shell, body)
    assert dbg.why("w_onlyng").reason == "not_on_path"  # u is a value of its own, not the loss
    ng = dbg.why("w_ng")
    assert ng.reason == "no_grad" and ng.source is not None and "t = w_ng * 3" in ng.source
    det = dbg.why("w_det")  # its norm, logged under no_grad first, is not where the path breaks
    assert det.reason == "detach" and det.source is not None and "w_det.detach()" in det.source
