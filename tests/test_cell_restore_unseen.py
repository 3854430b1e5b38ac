"""A ``%%gradsight`` cell that edits the user's tensors in place in a way its code does not show
(``cell_moved``): each re-run gives back what the tensors held before it, and its graph names them."""

from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell


def _unseen(notes: tuple[str, ...]) -> list[str]:
    return [n for n in notes if "does not read from its code" in n]


MANUAL_SGD = (
    "%%gradsight\nloss = model(x).pow(2).sum()\nloss.backward()\nwith torch.no_grad():\n"
    "    for p in model.parameters():\n        p -= 0.1 * p.grad\n        p.grad = None"
)


@pytest.mark.parametrize(
    "cell",
    [
        MANUAL_SGD,
        "%%gradsight\nfor t in data: t.mul_(2)\nloss = model(data[0]).sum()\nloss.backward()",
        "%%gradsight\nimages = images.to('cpu')\nimages /= 255\nloss = model(images).sum()\nloss.backward()",
        "%%gradsight\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\nloss = model(x).pow(2).sum()\n"
        "loss.backward()\nopt.step()",
    ],
)
def test_a_rerun_gives_back_what_it_edits_unseen_and_says_so(shell: InteractiveShell, cell: str) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nx = torch.randn(8, 4)\n"
        "data = [torch.randn(3, 4), torch.randn(3, 4)]\nimages = torch.full((8, 4), 255.0)",
        store_history=False,
    )
    dbg = shell.run_cell(cell, store_history=False).result
    ns = shell.user_ns
    tensors = [ns["model"].weight, ns["model"].bias, *ns["data"], ns["images"]]
    after = [t.detach().clone() for t in tensors]
    versions = [t._version for t in tensors]
    assert not _unseen(dbg.graph.notes)  # the first run is the user's own
    for _ in range(2):
        graph = dbg.rerun()
        (note,) = _unseen(graph.notes)
        assert "in place" in note and "values the first run left" in note
        assert all(torch.equal(t, a) for t, a in zip(tensors, after, strict=True))
        assert [t._version for t in tensors] == versions
    named = {"model.weight", "data[0]", "images"} & set(note.replace(",", " ").split())
    assert len(named) == 1  # only what this cell edits


def test_a_cell_whose_edits_gradsight_reads_has_no_such_note(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))\nx = torch.randn(8, 4)\n"
        "opt = torch.optim.Adam(model.parameters())",
        store_history=False,
    )
    dbg = shell.run_cell(
        "%%gradsight\nx /= 2\nopt.zero_grad()\nloss = model(x).pow(2).sum()\nloss.backward()\nopt.step()",
        store_history=False,
    ).result
    graph = dbg.rerun()
    assert not _unseen(graph.notes)  # the BatchNorm's running statistics are its forward's own
    assert not [n for n in graph.notes if "in place" in n or "steps" in n]
