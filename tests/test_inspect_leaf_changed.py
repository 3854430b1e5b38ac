"""The inspector's ``leaf:value`` of an AccumulateGrad node is the leaf as it is now: after an
optimizer step since the backward shown (in the %%gradsight cell itself, or by the user after a
runnable or live debugger's run) it says so, as a saved tensor changed in place does; never when the
leaf is as that backward found it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs
from gradsight._capture.inspect import LEAF_CHANGED_SINCE

CELL = "%%gradsight\nloss = lin(x).pow(2).sum()\nloss.backward()\n"


@pytest.fixture
def ns(shell: InteractiveShell) -> dict[str, Any]:
    shell.run_cell(
        "torch.manual_seed(0)\nlin = nn.Linear(3, 2)\nopt = torch.optim.SGD(lin.parameters(), lr=0.5)\n"
        "x = torch.randn(4, 3)",
        store_history=False,
    )
    return shell.user_ns


def value_view(dbg: gs.Debugger, node_id: str) -> gs.TensorView:
    return next(v for v in dbg.inspect(node_id).tensors if v.key == "leaf:value")


def shows(view: gs.TensorView, t: torch.Tensor) -> bool:
    """The view's statistics are those of ``t``'s values."""
    s = view.summary
    return (s.min, s.max, s.mean) == pytest.approx((float(t.min()), float(t.max()), float(t.mean())))


def test_a_cell_that_steps_its_optimizer_says_its_leaves_values_are_after_the_step(
    shell: InteractiveShell, ns: dict[str, Any]
) -> None:
    before = ns["lin"].weight.detach().clone()
    dbg = shell.run_cell(CELL + "opt.step()\n", store_history=False).result
    after = ns["lin"].weight.detach()
    assert not torch.equal(before, after)  # the step moved the weight
    for name in ("lin.weight", "lin.bias"):
        view = value_view(dbg, f"leaf:{name}")
        assert view.note is not None and LEAF_CHANGED_SINCE in view.note, (name, view.note)
    # the values shown are the weight now (after the step), which the note says
    assert shows(value_view(dbg, "leaf:lin.weight"), after) and not shows(value_view(dbg, "leaf:lin.weight"), before)


def test_a_cell_that_does_not_step_adds_no_note(shell: InteractiveShell, ns: dict[str, Any]) -> None:
    dbg = shell.run_cell(CELL, store_history=False).result
    for name in ("lin.weight", "lin.bias"):
        assert value_view(dbg, f"leaf:{name}").note is None, name


def test_a_step_in_a_later_cell_is_noted_too(shell: InteractiveShell, ns: dict[str, Any]) -> None:
    dbg = shell.run_cell(CELL, store_history=False).result
    shell.run_cell("opt.step()", store_history=False)
    view = value_view(dbg, "leaf:lin.weight")
    assert view.note is not None and LEAF_CHANGED_SINCE in view.note


def test_a_runnable_debugger_notes_the_users_step_after_its_run() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(4, 3)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    assert value_view(dbg, "leaf:weight").note is None  # as the run found it
    model(x).pow(2).sum().backward()
    opt.step()
    view = value_view(dbg, "leaf:weight")
    assert view.note is not None and LEAF_CHANGED_SINCE in view.note
    assert shows(view, model.weight.detach())
    dbg.rerun()  # a run on the weights now: its backward used them
    assert value_view(dbg, "leaf:weight").note is None
    dbg.close()


def test_a_live_debugger_notes_the_step_after_its_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)  # capture every step
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(4, 3)
    dbg = gs.debugger(model)
    model(x).pow(2).sum().backward()
    assert dbg.graph.run.step == 1
    assert value_view(dbg, "leaf:weight").note is None
    opt.step()
    view = value_view(dbg, "leaf:weight")
    assert view.note is not None and LEAF_CHANGED_SINCE in view.note
    dbg.close()
