"""A later cell changed what a ``%%gradsight`` cell starts from (drew from a generator, edited a tensor or an
array, stepped an optimizer): the next re-run the user sees says so, even when a why() trace re-ran the cell
before it. The trace's re-run starts from the user's newer value too, but its graph is never shown, so it
leaves the note to the next re-run (``cell_changed.Left.told``, ``cell_generators.FirstGenerators.told``)."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs

# what the cell starts from, the cell's line that uses it, a later cell that changes it, the note's start
CASES: dict[str, tuple[str, str, str, str]] = {
    "a generator drawn from": ("g = torch.Generator().manual_seed(5)", "x = torch.randn(3, 4, generator=g)",
                               "_ = torch.randn(10, generator=g)", "g drew numbers or was re-seeded"),
    "a tensor edited": ("x = torch.full((3, 4), 255.0)", "x /= 255", "x.fill_(510.)", "x changed"),
    "an array edited": ("import numpy as np\narr = np.full((3, 4), 255.0, dtype=np.float32)",
                        "arr /= 255\nx = torch.from_numpy(arr)", "arr[:] = 510.0", "arr changed"),
    "an optimizer stepped": ("x = torch.ones(3, 4)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)",
                             "opt.step()", "model(x).sum().backward(); opt.step()", "opt changed"),
}  # fmt: skip


def since_first_run(graph: gs.Graph) -> list[str]:
    return [n for n in graph.notes if "since the cell's first run" in n]


def grads(graph: gs.Graph) -> dict[str, float | None]:
    return {n.leaf.name: n.grad_in[0].norm for n in graph.leaves if n.leaf is not None and n.leaf.name}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_why_trace_leaves_the_note_of_a_later_cells_change_to_the_next_rerun(
    shell: InteractiveShell, kind: str
) -> None:
    setup, uses, later, says = CASES[kind]
    shell.run_cell(
        f"torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\nunused = torch.ones(2, requires_grad=True)\n{setup}"
    )
    cell = f"%%gradsight\n{uses}\nloss = model(x).pow(2).sum() + 0 * unused.detach().sum()\nloss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    shell.run_cell(later, store_history=False)
    why = dbg.why("unused")  # a taint trace: a re-run of the cell, from the user's newer value too
    assert why.reason == "detach"
    graph = dbg.rerun()
    (note,) = since_first_run(graph)
    assert note.startswith(says)
    again = dbg.rerun()
    assert not since_first_run(again) and grads(again) == pytest.approx(grads(graph))  # said once, same start
