"""A later cell edits what a ``%%gradsight`` cell edits in place (a tensor, an array, an optimizer and its
parameters): the user's newer value wins. The next re-run starts from it, says so once, and later re-runs
start from it too; what nobody touched since still starts from the first run's start (``cell_changed``)."""

from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def grads(graph: gs.Graph) -> dict[str, float | None]:
    return {n.leaf.name: n.grad_in[0].norm for n in graph.leaves if n.leaf is not None and n.leaf.name}


def changed(graph: gs.Graph) -> list[str]:
    return [n for n in graph.notes if "changed since the cell's first run" in n]


def test_a_rerun_starts_from_a_tensor_a_later_cell_edited_and_the_others_from_the_first_start(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(
        "images = torch.full((8, 4), 255.0)\nscale = torch.ones(4)\nw = torch.ones(4, requires_grad=True)",
        store_history=False,
    )
    cell = "%%gradsight\nimages /= 255\nscale *= 2\nloss = ((images * scale) @ w).sum()\nloss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    assert grads(dbg.graph)["w"] == pytest.approx(32.0)  # 8 rows of 1 * 2: 16 per entry
    unchanged = dbg.rerun()
    assert grads(unchanged)["w"] == pytest.approx(32.0) and not changed(unchanged)
    images = shell.user_ns["images"]
    shell.run_cell("images.fill_(510.)", store_history=False)  # a later cell: the user's data is 510 now
    version = images._version
    graph = dbg.rerun()
    assert grads(graph)["w"] == pytest.approx(64.0)  # 510 / 255 = 2; scale from its first start: 1 * 2
    (note,) = changed(graph)
    assert note.startswith("images changed") and "scale" not in note
    assert float(images.min()) == float(images.max()) == 510.0 and images._version == version
    again = dbg.rerun()
    assert grads(again)["w"] == pytest.approx(64.0) and not changed(again)  # said once


def test_a_rerun_starts_from_the_parameters_and_state_of_an_optimizer_trained_in_a_later_cell(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\nx = torch.randn(8, 4)\n"
        "opt = torch.optim.Adam(model.parameters(), lr=0.1)",
        store_history=False,
    )
    step = "opt.zero_grad()\nloss = model(x).pow(2).sum()\nloss.backward()\nopt.step()"
    dbg = shell.run_cell("%%gradsight\n" + step, store_history=False).result
    first = grads(dbg.graph)
    unchanged = dbg.rerun()
    assert grads(unchanged) == pytest.approx(first) and not changed(unchanged)
    shell.run_cell(f"for _ in range(3):\n    {step.replace(chr(10), '; ')}", store_history=False)
    model, opt = shell.user_ns["model"], shell.user_ns["opt"]
    params = [p.detach().clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in opt.state[model.weight].items()}
    copy = torch.nn.Linear(4, 1)
    copy.load_state_dict(model.state_dict())
    copy(shell.user_ns["x"]).pow(2).sum().backward()
    want = {"model.weight": float(copy.weight.grad.norm()), "model.bias": float(copy.bias.grad.norm())}
    graph = dbg.rerun()
    assert grads(graph) == pytest.approx(want) and grads(graph) != pytest.approx(first)
    (note,) = changed(graph)
    assert note.startswith("opt changed")
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params, strict=True))
    assert all(torch.equal(opt.state[model.weight][k], v) for k, v in state.items())
    again = dbg.rerun()
    assert grads(again) == pytest.approx(want) and not changed(again)


def test_a_rerun_starts_from_an_array_a_later_cell_edited(shell: InteractiveShell) -> None:
    shell.run_cell(
        "import numpy as np\narr = np.full((4, 3), 255.0, dtype=np.float32)\nw = torch.ones(3, requires_grad=True)",
        store_history=False,
    )
    dbg = shell.run_cell(
        "%%gradsight\narr /= 255\nloss = (torch.from_numpy(arr) @ w).sum()\nloss.backward()", store_history=False
    ).result
    assert grads(dbg.graph)["w"] == pytest.approx(4 * 3**0.5)  # 4 rows of 1 in each of 3 entries
    assert not changed(dbg.rerun())
    shell.run_cell("arr[...] = 510.0", store_history=False)
    graph = dbg.rerun()
    assert grads(graph)["w"] == pytest.approx(8 * 3**0.5)  # 510 / 255 = 2
    (note,) = changed(graph)
    assert note.startswith("arr changed") and not [n for n in graph.notes if "in place" in n]
    arr = shell.user_ns["arr"]
    assert float(arr.min()) == float(arr.max()) == 510.0
    assert grads(dbg.rerun())["w"] == pytest.approx(8 * 3**0.5)
