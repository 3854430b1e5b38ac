"""gs.debugger(fn) names the modules fn reaches through the functions it calls, several calls deep."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradsight as gs

lin1 = nn.Linear(6, 6)
lin2 = nn.Linear(6, 2)
layers = [nn.Linear(6, 6), nn.Linear(6, 6)]
x = torch.randn(3, 6)


def blk(t: torch.Tensor) -> torch.Tensor:
    return torch.tanh(lin1(t))


def body() -> torch.Tensor:
    return lin2(blk(x)).pow(2).sum()


def through_checkpoint() -> torch.Tensor:
    return lin2(checkpoint(blk, x, use_reentrant=False)).pow(2).sum()


def stacked(t: torch.Tensor) -> torch.Tensor:
    return sum(layer(t) for layer in layers)  # type: ignore[return-value]  # names read in a generator's code


def modules_of(dbg: gs.Debugger) -> dict[str, Any]:
    return {n.id: n.module for n in dbg.graph.nodes}


def test_modules_two_calls_deep_are_named() -> None:
    def step() -> torch.Tensor:  # step → body → blk, which calls lin1
        return body() * 2

    for fn in (step, lambda: through_checkpoint() * 2):
        dbg = gs.debugger(fn)
        got = modules_of(dbg)
        assert got["lin1/AddmmBackward0#0"] == "lin1" and got["lin2/AddmmBackward0#0"] == "lin2", got
        assert {n.leaf.name for n in dbg.graph.leaves if n.leaf is not None} == {
            "lin1.weight", "lin1.bias", "lin2.weight", "lin2.bias"
        }  # fmt: skip
        dbg.close()


def test_closures_deep_and_names_in_nested_code_are_followed() -> None:
    def inner(t: torch.Tensor) -> torch.Tensor:
        return stacked(t)

    def middle() -> torch.Tensor:
        return inner(x).sum()

    def outer() -> torch.Tensor:
        return middle() + 0

    dbg = gs.debugger(outer)
    names = {n.leaf.name for n in dbg.graph.leaves if n.leaf is not None}
    assert names == {"layers[0].weight", "layers[0].bias", "layers[1].weight", "layers[1].bias"}, names
    dbg.close()


def test_recursive_functions_end() -> None:
    def down(n: int) -> torch.Tensor:
        return lin2(x).sum() if n == 0 else down(n - 1) + 0

    dbg = gs.debugger(lambda: down(3))
    assert dbg.status == "ready" and modules_of(dbg)["lin2/AddmmBackward0#0"] == "lin2"
    dbg.close()
