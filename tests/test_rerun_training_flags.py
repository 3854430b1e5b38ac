"""A re-run replays the train/eval flags of the run it is compared with: after a validation pass's
``model.eval()``, a re-run of a train-mode step keeps dropout and BatchNorm's batch statistics (else
the diff credits the toggle with the mode change), says the flags differ now, and leaves the user's
flags and BatchNorm buffers exactly as they were — also when the re-run raises."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight.runs import RerunError


class _Fails(nn.Module):
    """Raises in its forward once ``fail`` is set: a re-run whose code raises."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail:
            raise ValueError("boom")
        return x


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2), _Fails())


def _state(model: nn.Module) -> tuple[list[bool], list[torch.Tensor]]:
    return [m.training for m in model.modules()], [b.clone() for b in model.buffers()]


def _same(a: tuple[list[bool], list[torch.Tensor]], b: tuple[list[bool], list[torch.Tensor]]) -> bool:
    return a[0] == b[0] and all(torch.equal(x, y) for x, y in zip(a[1], b[1], strict=True))


def _checked(dbg: gs.Debugger, model: nn.Sequential, shown: str) -> None:
    """After ``model.eval()``: a toggled re-run runs as the shown run did, and changes nothing of the user's."""
    first = {n.id: n.grad_norm for n in dbg.graph.nodes}
    model.eval()
    model[0].train()  # a mix the user left: put back exactly
    before = _state(model)
    graph = dbg.rerun(requires_grad={"4.bias": False})
    assert _same(before, _state(model))
    assert "3/MulBackward0#0" in graph  # dropout ran, as in the shown run
    assert graph.node("leaf:0.weight").grad_norm == pytest.approx(first["leaf:0.weight"])
    assert [r["id"] for r in (dbg.diff or {})["removed"]] == ["leaf:4.bias"]
    assert any(f"since {shown}" in n and "train/eval modes" in n for n in graph.notes)
    model[5].fail = True
    with pytest.raises(RerunError, match="boom"):
        dbg.rerun(requires_grad={"4.bias": False})
    assert _same(before, _state(model))


@pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)
def test_a_live_rerun_after_model_eval_replays_the_steps_train_mode() -> None:
    model = _model()
    dbg = gs.debugger(model)
    torch.manual_seed(1)
    x = torch.randn(6, 5)
    model.train()
    model(x).pow(2).sum().backward()
    with torch.no_grad():  # a validation pass, in eval mode
        model.eval()
        model(torch.randn(6, 5))
    _checked(dbg, model, "step 1")
    dbg.close()


def test_a_runnable_rerun_after_model_eval_replays_the_first_runs_train_mode() -> None:
    model = _model()
    torch.manual_seed(1)
    dbg = gs.debugger(model, inputs=torch.randn(6, 5), loss=lambda o: o.pow(2).sum())
    _checked(dbg, model, "the first run")
    dbg.close()


def test_no_note_when_the_flags_are_the_ones_the_run_had() -> None:
    model = _model()
    dbg = gs.debugger(model, inputs=torch.randn(6, 5), loss=lambda o: o.pow(2).sum())
    graph = dbg.rerun(requires_grad={"4.bias": False})
    assert not any("train/eval" in n for n in graph.notes) and model.training
    dbg.close()
