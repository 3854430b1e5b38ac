"""why() follows a leaf's values where autograd does not: through a NumPy round trip
(``torch.from_numpy(h.detach().numpy() * 2)``: the array NumPy computes is no buffer a conversion
made) and through a gradient taken inside the forward (``torch.autograd.grad(..., create_graph=True)``
in a gradient penalty: the gradient depends only on what does not drop out when differentiating)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


def _from_numpy(h: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(h.detach().numpy() * 2)  # the cut


def _tensor_of_array(h: torch.Tensor) -> torch.Tensor:
    return torch.tensor(np.tanh(h.detach().numpy()))  # the cut


def _tensor_of_number(h: torch.Tensor) -> torch.Tensor:
    return torch.tensor(h.sum().detach().item() * 2).expand(4, 3)  # the cut


@pytest.mark.parametrize(("make", "op"), [(_from_numpy, ".numpy()"), (_tensor_of_array, ".numpy()"),
                                          (_tensor_of_number, ".item()")])  # fmt: skip
def test_a_detach_then_a_round_trip_through_numpy_or_python_is_named_with_its_line(
    make: Callable[[torch.Tensor], torch.Tensor], op: str
) -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 1)

    def step() -> torch.Tensor:
        return b(make(a(x))).sum()

    x = torch.randn(4, 3)
    why = gs.debugger(step).why("a.weight")
    assert why.reason == "detach", why
    assert "detach()" in why.message and op in why.message and "round trip" in why.message
    assert why.source is not None and "# the cut" in why.source
    assert a.weight.grad is None and b.weight.grad is None  # the trace changed nothing


def test_a_detached_array_only_logged_is_no_cut_of_a_leaf_off_the_path() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 1)
    x = torch.randn(4, 3)
    logged: list[np.ndarray] = []

    def step() -> torch.Tensor:
        logged.append(a(x).detach().numpy() * 2)
        return b(x).sum()

    why = gs.debugger(step).why("a.weight")
    assert why.reason == "not_on_path" and "round trip" not in why.message and "not on the path" in why.message


def test_a_numpy_made_input_after_a_logged_number_is_not_taken_for_the_number() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(3, 3), nn.Linear(3, 1)
    x, rows = torch.randn(4, 3), np.array([0, 2, 3])
    logged: list[float] = []

    def step() -> torch.Tensor:
        logged.append(a(x).sum().item())  # a number, not an array: torch.from_numpy below is not made of it
        return b(x[torch.from_numpy(rows)]).sum()

    why = gs.debugger(step).why("a.weight")
    assert why.reason == "not_on_path" and "not on the path" in why.message, why


def _penalty(disc: nn.Module, real: torch.Tensor) -> Callable[[], torch.Tensor]:
    def gp() -> torch.Tensor:
        xi = real.clone().requires_grad_(True)
        g, *_ = torch.autograd.grad(disc(xi).sum(), xi, create_graph=True)  # the gradient taken
        return ((g.norm(dim=1) - 1) ** 2).mean()

    return gp


def test_a_bias_that_drops_out_of_a_gradient_penalty_is_said_to_and_not_to_reach_the_loss() -> None:
    torch.manual_seed(0)
    disc = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    gp = _penalty(disc, torch.randn(5, 4))
    assert torch.autograd.grad(gp(), disc[2].bias, allow_unused=True) == (None,)  # torch agrees
    dbg = gs.debugger(gp)
    assert [w.name for w in dbg.graph.missing] == ["disc.2.bias"]
    why = dbg.why("disc.2.bias")
    assert why.reason == "not_on_path", why
    assert "create_graph=True" in why.message and "does not depend on disc.2.bias" in why.message
    assert "reach the loss" not in why.message and "could not find" not in why.message
    assert why.source is not None and "# the gradient taken" in why.source


def test_a_cell_whose_loss_uses_a_gradient_that_depends_on_a_leaf_does_not_blame_the_gradient(
    shell: InteractiveShell,
) -> None:
    torch.manual_seed(0)
    shell.user_ns.update(w=torch.randn(3, requires_grad=True), v=torch.randn(3, requires_grad=True))
    # w's gradient: 2 * w * v.detach() — depends on w; v's values reach it only cut by the detach
    cell = "%%gradsight\ng, = torch.autograd.grad((w * w * v.detach()).sum(), w, create_graph=True)\nloss = g.sum()"
    cell += "\nloss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    assert {w.name for w in dbg.graph.missing} == {"v"}
    why = dbg.why("v")
    assert why.reason == "detach" and "create_graph" not in why.message, why


class _Node:
    """A stand-in autograd node that counts how often its inputs are looked at."""

    looked = 0

    def __init__(self, inputs: list[_Node]) -> None:
        self._inputs = inputs

    @property
    def next_functions(self) -> tuple[tuple[_Node, int], ...]:
        _Node.looked += 1
        return tuple((n, 0) for n in self._inputs)


def test_the_gradients_of_one_grad_call_are_answered_by_one_walk_of_their_shared_graph() -> None:
    from types import SimpleNamespace

    from gradsight._capture import taint_grads

    chain = [_Node([])]
    for _ in range(199):
        chain.append(_Node([chain[-1]]))
    grads = [SimpleNamespace(grad_fn=_Node([chain[-1 - i]])) for i in range(50)]  # 50 gradients, one graph
    off_graph = torch.ones(2, requires_grad=True) * 2  # followed, in none of their graphs
    _Node.looked = 0
    assert taint_grads.depends(grads, {id(off_graph): off_graph}) == [False] * 50  # type: ignore[arg-type]
    assert _Node.looked <= 250  # each node once (a walk per gradient: ~7,500)
