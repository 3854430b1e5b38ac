"""A tensor's graph cannot re-run: ``dbg.rerun(...)`` says so first, before checking the names its
toggles give (a frozen parameter of ``params=`` is no leaf of the graph, but it is no typo either)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight import RerunError
from gradsight._capture.targets import NO_RERUN


@pytest.mark.parametrize(
    "toggles",
    [{"requires_grad": {"0.weight": True}}, {"requires_grad": {"no.such": False}}, {"detach": "0"}, {}],
)
def test_a_tensor_debugger_refuses_to_rerun_before_naming_anything(toggles: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    loss = model(torch.randn(2, 4)).sum()
    dbg = gs.debugger(loss, params=model)
    graph = dbg.graph
    with pytest.raises(RerunError) as raised:
        dbg.rerun(**toggles)  # type: ignore[arg-type]
    assert str(raised.value) == NO_RERUN
    assert dbg.graph is graph and dbg.status == "ready" and model[0].weight.requires_grad is False
    dbg.close()


def test_a_runnable_debugger_still_names_the_typo() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    dbg = gs.debugger(model, inputs=torch.randn(2, 4))
    with pytest.raises(gs.ToggleError, match=r"did you mean '0\.weight'"):
        dbg.rerun(requires_grad={"0.weigth": False})
    dbg.close()
