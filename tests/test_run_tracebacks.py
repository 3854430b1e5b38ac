"""A runnable run's error shows the user's frames, never gradsight's own (run.py, specs.py, differentiate.py)."""

from __future__ import annotations

import os

import torch
from torch import nn

import gradsight as gs

PACKAGE = os.path.dirname(gs.__file__) + os.sep


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("user bug")


class EditsSaved(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(self.lin(x))
        y.mul_(2)  # sigmoid saved y: backward fails
        return y.sum()


def frames(error: str) -> list[str]:
    return [line.strip() for line in error.splitlines() if line.strip().startswith("File ")]


def test_a_forward_error_starts_at_the_users_forward() -> None:
    dbg = gs.debugger(Raises(), inputs=torch.randn(4, 3))
    assert dbg.status == "error"
    shown = frames(dbg.error)
    assert shown and __file__ in shown[0] and shown[0].endswith("in forward"), dbg.error
    assert PACKAGE not in dbg.error
    assert dbg.error.endswith("RuntimeError: user bug")


def test_a_function_error_shows_the_functions_frames_only() -> None:
    def step() -> torch.Tensor:
        return torch.ones(2, requires_grad=True).sum() / 0 + helper()

    def helper() -> torch.Tensor:
        raise ZeroDivisionError("in the helper")

    dbg = gs.debugger(step)
    shown = frames(dbg.error)
    assert [line.rpartition(" in ")[2] for line in shown] == ["step", "helper"], dbg.error
    assert PACKAGE not in dbg.error


def test_a_backward_error_hides_gradsights_call_of_autograd() -> None:
    dbg = gs.debugger(EditsSaved(), inputs=torch.randn(2, 3))
    assert dbg.status == "error" and "modified by an inplace operation" in dbg.error
    assert PACKAGE not in dbg.error, dbg.error
    assert dbg.graph.find("SigmoidBackward0")  # the graph is still shown


def test_an_error_gradsight_raises_reads_as_its_one_line() -> None:
    dbg = gs.debugger(nn.Linear(3, 2), inputs=torch.randn(4, 3), loss=lambda out: 1.5)
    assert dbg.error == "TypeError: loss(output) must return a tensor, not float"


def test_chained_errors_lose_gradsights_frames_too() -> None:
    def step() -> torch.Tensor:
        try:
            return torch.ones(2, requires_grad=True)[5].sum()
        except IndexError as e:
            raise ValueError("batch too short") from e

    dbg = gs.debugger(step)
    assert "IndexError" in dbg.error and dbg.error.endswith("ValueError: batch too short")
    assert PACKAGE not in dbg.error
