"""Errors read as without gradsight: no frames of torch's dispatch to gradsight's torch-function mode.

A torch function written in Python (``Tensor.backward``, ``F.softmax``) hands itself to the active
mode through ``overrides.handle_torch_function``, and the mode calls it again: under a
``%%gradsight`` cell's (or a runnable run's) source tracker an error showed that function twice and
torch's dispatch between (``tracebacks.mode_detours``). The oracle: the frames the same code shows
in a plain cell, or called plainly. A mode of the user's keeps its frames."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from IPython.core.interactiveshell import InteractiveShell
from torch.overrides import TorchFunctionMode

import gradsight as gs
from tests.cells import shown

BACKWARD = "a = torch.randn(3, requires_grad=True)\nb = a.exp()\nb.add_(1)\nb.sum().backward()\n"
SOFTMAX = "a = torch.randn(3, requires_grad=True)\nb = torch.nn.functional.softmax(a, dim=5)\n"


def _torch_frames(text: str) -> list[str]:
    """The ``File ...`` lines of an IPython traceback: every frame but the cell's own."""
    return [line.strip() for line in text.splitlines() if line.startswith("File ")]


@pytest.mark.parametrize("body", [BACKWARD, SOFTMAX], ids=["backward", "softmax"])
def test_a_cells_error_shows_the_frames_of_a_plain_cell(shell: InteractiveShell, capsys: Any, body: str) -> None:
    shell.run_cell(body, store_history=True)
    plain = _torch_frames(shown(capsys))
    shell.run_cell("%%gradsight\n" + body, store_history=True)
    magic = shown(capsys)
    assert plain and _torch_frames(magic) == plain
    assert "overrides.py" not in magic


class UsersMode(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


def _softmax() -> torch.Tensor:
    return F.softmax(torch.randn(3, requires_grad=True), dim=5).sum()


def _softmax_in_users_mode() -> torch.Tensor:
    with UsersMode():
        return F.softmax(torch.randn(3, requires_grad=True), dim=5).sum()


def _frames(text: str) -> list[tuple[str, str, str]]:
    """(file, line, function) of each frame from the user's function down."""
    found = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)
    first = next(i for i, (_, _, name) in enumerate(found) if name.startswith("_softmax"))
    return found[first:]


@pytest.mark.parametrize("fn", [_softmax, _softmax_in_users_mode], ids=["gradsight's mode", "and the user's"])
def test_a_runnable_runs_error_shows_the_frames_of_a_plain_call(fn: Callable[[], torch.Tensor]) -> None:
    with pytest.raises(IndexError) as plain:
        fn()
    dbg = gs.debugger(fn)
    assert dbg.status == "error" and dbg.error is not None
    expected = _frames("".join(traceback.format_exception(plain.value)))
    assert _frames(dbg.error) == expected
    assert ("overrides.py" in dbg.error) == (fn is _softmax_in_users_mode)  # the user's mode: its dispatch stays
