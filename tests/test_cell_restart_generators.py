"""A later cell draws from (or re-seeds) a generator a ``%%gradsight`` cell draws from: as with a tensor it
edits (``test_cell_restart_changed``), the user's newer state wins. The next re-run draws from it, says so
once, and later re-runs draw from the generator as it is then; the generator is given back as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def grads(graph: gs.Graph) -> dict[str, float | None]:
    return {n.leaf.name: n.grad_in[0].norm for n in graph.leaves if n.leaf is not None and n.leaf.name}


def changed(graph: gs.Graph) -> list[str]:
    return [n for n in graph.notes if "since the cell's first run" in n]


def torch_draw(g: Any) -> torch.Tensor:
    copy = torch.Generator()
    copy.set_state(g.get_state())
    return torch.randn(3, 4, generator=copy)


def numpy_draw(rng: Any) -> torch.Tensor:
    copy = np.random.default_rng()
    copy.bit_generator.state = rng.bit_generator.state
    return torch.from_numpy(copy.standard_normal((3, 4))).float()


def state(g: Any) -> Any:
    return g.get_state().clone() if isinstance(g, torch.Generator) else g.bit_generator.state


def same(a: Any, b: Any) -> bool:
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else bool(a == b)


CASES: dict[str, tuple[str, str, str, Callable[[Any], torch.Tensor]]] = {
    "torch, re-seeded": ("g = torch.Generator().manual_seed(5)", "torch.randn(3, 4, generator=g)",
                         "g.manual_seed(7)", torch_draw),
    "torch, drawn from": ("g = torch.Generator().manual_seed(5)", "torch.randn(3, 4, generator=g)",
                          "_ = torch.randn(10, generator=g)", torch_draw),
    "numpy, drawn from": ("import numpy as np\ng = np.random.default_rng(5)",
                          "torch.from_numpy(g.standard_normal((3, 4))).float()", "_ = g.standard_normal(10)",
                          numpy_draw),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_rerun_draws_from_a_generator_a_later_cell_moved_and_names_it_once(
    shell: InteractiveShell, kind: str
) -> None:
    setup, draw, later, replay = CASES[kind]
    shell.run_cell(f"torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\n{setup}", store_history=False)
    cell = f"%%gradsight\nx = {draw}\nloss = model(x).pow(2).sum()\nloss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    first = grads(dbg.graph)
    unchanged = dbg.rerun()
    assert grads(unchanged) == pytest.approx(first) and not changed(unchanged)  # the first run's numbers
    shell.run_cell(later, store_history=False)
    g, model = shell.user_ns["g"], shell.user_ns["model"]
    now = state(g)
    copy = torch.nn.Linear(4, 1)
    copy.load_state_dict(model.state_dict())
    copy(replay(g)).pow(2).sum().backward()
    want = {"model.weight": float(copy.weight.grad.norm()), "model.bias": float(copy.bias.grad.norm())}
    graph = dbg.rerun()
    assert grads(graph) == pytest.approx(want) and grads(graph) != pytest.approx(first)
    (note,) = changed(graph)
    assert note.startswith("g drew numbers or was re-seeded since the cell's first run")
    assert same(state(g), now)  # given back: the re-run's draws are not the user's
    again = dbg.rerun()
    assert grads(again) == pytest.approx(want) and not changed(again)  # from the generator as it is: said once
    assert same(state(g), now)


def test_a_generator_the_first_run_did_not_draw_from_is_not_named(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\ng = torch.Generator().manual_seed(5)")
    cell = "%%gradsight\nx = torch.ones(3, 4) if g is not None else None\nloss = model(x).pow(2).sum()\nloss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    shell.run_cell("_ = torch.randn(10, generator=g)", store_history=False)
    assert not changed(dbg.rerun())  # the cell reaches g but draws nothing from it: its state is no start


def test_a_data_loaders_generator_is_named_as_the_cell_reaches_it(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\n"
        "class Noisy(torch.utils.data.Dataset):\n    def __init__(self):\n"
        "        self.g = torch.Generator().manual_seed(7)\n"
        "    def __len__(self):\n        return 64\n    def __getitem__(self, i):\n"
        "        return torch.randn(4, generator=self.g)\nloader = torch.utils.data.DataLoader(Noisy(), batch_size=3)",
        store_history=False,
    )
    dbg = shell.run_cell("%%gradsight\nloss = model(next(iter(loader))).pow(2).sum()\nloss.backward()").result
    shell.run_cell("_ = next(iter(loader))", store_history=False)  # a later cell takes a batch: g moves on
    (note,) = changed(dbg.rerun())
    assert note.startswith("loader.dataset.g drew numbers or was re-seeded since the cell's first run")
