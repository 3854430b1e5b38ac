"""A NumPy array a ``%%gradsight`` cell edits in place (``arr /= 255``): re-runs start from the values the
first run started from (within the budget) and give back what the array held before them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs

CELL = "%%gradsight\narr /= 255\nloss = model(torch.from_numpy(arr)).sum()\nloss.backward()"


def _weight_grad(graph: gs.Graph) -> float | None:
    (node,) = [n for n in graph.leaves if n.leaf is not None and n.leaf.name == "model.weight"]
    return node.grad_in[0].norm


@pytest.fixture
def small_budget() -> Iterator[None]:
    budget = gs.options.memory_budget
    gs.options.memory_budget = 64  # smaller than the array: not copied
    try:
        yield
    finally:
        gs.options.memory_budget = budget


def _setup(shell: InteractiveShell) -> None:
    shell.run_cell(
        "import numpy as np\ntorch.manual_seed(0)\nmodel = nn.Linear(4, 2)\n"
        "arr = np.full((8, 4), 255.0, dtype=np.float32)",
        store_history=False,
    )


def test_a_rerun_starts_from_the_arrays_first_values_and_gives_it_back(shell: InteractiveShell) -> None:
    _setup(shell)
    dbg = shell.run_cell(CELL, store_history=False).result
    arr = shell.user_ns["arr"]
    assert float(arr.max()) == 1.0
    first = _weight_grad(dbg.graph)
    for _ in range(2):
        graph = dbg.rerun()
        assert _weight_grad(graph) == pytest.approx(first)
        assert float(arr.max()) == float(arr.min()) == 1.0  # as the first run left it
        assert not [n for n in graph.notes if "in place" in n]


def test_past_the_budget_a_rerun_names_the_array_and_gives_it_back(shell: InteractiveShell, small_budget: None) -> None:
    _setup(shell)
    dbg = shell.run_cell(CELL, store_history=False).result
    arr = shell.user_ns["arr"]
    graph = dbg.rerun()
    (note,) = [n for n in graph.notes if "in place" in n]
    assert "arr" in note and "memory budget" in note
    assert float(arr.max()) == float(arr.min()) == 1.0
