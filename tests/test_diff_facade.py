"""``dbg.diff`` is a dict (the view's wire form); ``gs.GraphDiff``, which no public call returns, is no
longer part of the facade (deprecated, still importable from ``gradsight.diff``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight.diff import GraphDiff


def test_dbg_diff_is_the_documented_dict_and_graphdiff_is_not_in_the_facade() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    dbg = gs.debugger(model, inputs=torch.randn(5, 4), loss=lambda out: out.pow(2).sum())
    dbg.rerun(requires_grad={"0": False})
    assert isinstance(dbg.diff, dict)
    assert dbg.diff["lost_grad"] == ["0.bias", "0.weight"] and set(dbg.diff["loss"]) == {"before", "after"}
    assert "GraphDiff" not in gs.__all__
    with pytest.warns(DeprecationWarning, match="dbg.diff is a dict"):
        assert gs.GraphDiff is GraphDiff
    with pytest.raises(AttributeError):
        gs.NoSuchName  # noqa: B018
