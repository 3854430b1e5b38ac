"""A runnable run's error shows the user's frames, never gradsight's own (run.py, specs.py, differentiate.py)."""

from __future__ import annotations

import os

import pytest
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


def chain(n: int) -> ValueError:
    err = None
    for i in range(n):
        try:
            raise ValueError(f"attempt {i}") from err
        except ValueError as e:
            err = e
    assert err is not None
    return err


def test_a_long_chain_of_errors_is_formatted_not_raised() -> None:
    def step() -> torch.Tensor:  # a retry loop: each failure raised from the one before
        raise chain(2000)

    dbg = gs.debugger(step)
    assert dbg.status == "error" and dbg.error.endswith("ValueError: attempt 1999"), dbg.error[-300:]
    assert "attempt 0" in dbg.error and PACKAGE not in dbg.error
    dbg.close()


def test_a_bug_inside_gradsight_keeps_gradsights_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight._capture import source, text

    monkeypatch.setattr(source, "_no_module_between", text.shorten)  # raises TypeError inside text.py
    w = torch.rand(3, requires_grad=True)
    dbg = gs.debugger(lambda: torch.log(w).sum())
    assert dbg.status == "error" and dbg.error.startswith("gradsight failed in its own code (a bug"), dbg.error
    shown = frames(dbg.error)
    assert any("text.py" in f and PACKAGE in f for f in shown), dbg.error  # where the bug is
    assert any("source.py" in f for f in shown), dbg.error
    assert dbg.error.splitlines()[-1].startswith("TypeError")
    dbg.close()


def test_what_gradsight_refuses_on_purpose_still_hides_its_frames() -> None:
    def step() -> torch.Tensor:
        loss = torch.ones(2, requires_grad=True).sum()
        loss.backward()  # refused inside a run (no_train): a raise, not a bug
        return loss

    dbg = gs.debugger(step)
    assert dbg.status == "error" and PACKAGE not in dbg.error, dbg.error
    dbg.close()
