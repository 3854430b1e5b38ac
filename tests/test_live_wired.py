from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from tests.test_live_notes import InPlace
from tests.test_live_rerun import _model

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def test_a_live_rerun_says_it_reuses_the_steps_output_gradient() -> None:
    torch.manual_seed(0)
    model, x = _model(), torch.randn(16, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    dbg = gs.debugger(model)
    model(x).pow(2).sum().backward()
    note = next(n for n in dbg.rerun().notes if n.startswith("A live re-run replays"))
    assert "dL/d output of step 1" in note and "changed" not in note
    opt.step()
    note = next(n for n in dbg.rerun().notes if n.startswith("A live re-run replays"))
    assert "parameters changed since step 1" in note and "no real loss" in note
    dbg.close()


def test_a_step_whose_backward_raised_sets_the_views_status_until_the_next_step(shell: InteractiveShell) -> None:
    torch.manual_seed(0)
    model, x = InPlace(), torch.randn(5, 4)
    shell.user_ns.update(model=model, x=x)
    shell.run_cell("dbg = __import__('gradsight').debugger(model)")
    dbg = shell.user_ns["dbg"]
    shell.run_cell("model(x).sum().backward()")
    assert dbg.status == "error" and "modified by an inplace operation" in dbg.error
    model.broken = False
    shell.run_cell("model(x).sum().backward()")
    assert dbg.status == "ready" and dbg.error == "" and dbg.graph.run.step == 2
    dbg.close()
