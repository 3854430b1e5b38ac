"""A ``%%gradsight`` cell's scope (the leaves and modules its toggles name, ``cell_scope.scope_of``) walks
every module of the namespace, and a re-run asks for it about ten times (the view's checks, the re-run, its
controls, aliases and facts): it is computed once, and again only when what it reads changed since
(``cell_scope.scope_key``): a layer added or a parameter replaced in a later cell, or a name rebound."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

from gradsight._capture import cell_target

CELL = "%%gradsight\nloss = model(x).pow(2).sum()\nloss.backward()"


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a scope is computed (one entry each)."""
    calls: list[int] = []
    real = cell_target.scope_of

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cell_target, "scope_of", counted)
    return calls


def test_a_rerun_computes_the_cells_scope_once(shell: InteractiveShell, computed: list[int]) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))\n"
                   "x = torch.randn(2, 4)", store_history=False)  # fmt: skip
    dbg = shell.run_cell(CELL, store_history=False).result
    computed.clear()
    dbg.rerun(requires_grad={"model.0.weight": False})
    assert len(computed) <= 1
    dbg.rerun()
    assert not computed[1:]  # nothing changed since: the scope of the re-run before serves
    dbg.why("model.0.weight")
    assert not computed[1:]


def test_the_scope_is_computed_again_after_the_namespace_changed(shell: InteractiveShell, computed: list[int]) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))\n"
                   "x = torch.randn(2, 4)", store_history=False)  # fmt: skip
    dbg = shell.run_cell(CELL, store_history=False).result
    dbg.rerun()
    computed.clear()
    shell.run_cell("model[0].extra = nn.Linear(4, 4)", store_history=False)  # never called: no node
    assert "model.0.extra" in dbg.rerun(no_grad=["model.0.extra"]).controls.modules
    assert len(computed) == 1
    # a parameter replaced under the same name: the toggle reaches the new one
    shell.run_cell("model[0].weight = nn.Parameter(torch.ones(4, 4))", store_history=False)
    graph = dbg.rerun(requires_grad={"model.0.weight": False})
    assert len(computed) == 2 and "model.0.weight" not in {n.leaf.name for n in graph.leaves if n.leaf is not None}
    assert shell.user_ns["model"][0].weight.requires_grad  # the re-run's toggle is not kept (apply=False)
    # a name rebound to a leaf in the same cell as the re-run: its control is there
    shell.user_ns["dbg"] = dbg
    graph = shell.run_cell("x = torch.randn(2, 4, requires_grad=True)\ndbg.rerun()", store_history=False).result
    assert len(computed) == 3 and "x" in {c.name for c in graph.controls.leaves}
    assert isinstance(shell.user_ns["x"], torch.Tensor)
