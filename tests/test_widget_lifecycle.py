"""A debugger's widget after close(), closed in the middle of a re-run, and writes only Python may make."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import ipywidgets.widgets.widget as widget_module
import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight.runs import RerunError


def _debugger(loss: Any = None) -> gs.Debugger:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    return gs.debugger(model, inputs=torch.randn(32, 16), loss=loss or (lambda o: o.pow(2).sum()))


def _kept(dbg: gs.Debugger) -> int:
    stores = [getattr(r.captured, "store", None) for r in dbg._runs.records]
    held = sum(len(s) for s in stores if s is not None)
    return held + (0 if dbg._captured is None or dbg._captured.store is None else len(dbg._captured.store))


def test_closed_during_a_rerun_keeps_nothing_and_says_so() -> None:
    calls = {"n": 0}
    box: dict[str, gs.Debugger] = {}

    def loss(out: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 2:  # the re-run: the notebook closes the view while it computes
            box["dbg"].close()
        return out.pow(2).sum()

    dbg = box["dbg"] = _debugger(loss)
    with pytest.raises(RerunError, match="closed during the re-run"):
        dbg.rerun(requires_grad={"0.bias": False})
    assert _kept(dbg) == 0 and dbg._runs.records == []
    assert dbg.status == "ready"  # not left "running"


def test_writing_the_run_shown_after_close_is_refused_without_recursion() -> None:
    dbg = _debugger()
    dbg.rerun(requires_grad={"0.bias": False})
    dbg.close()
    dbg.current = 0
    assert dbg.current == 1 and "closed" in dbg.error
    dbg.baseline = 5
    assert dbg.baseline == 0 and "no run 5" in dbg.error


def test_close_closes_the_layout_widget_too() -> None:
    dbg = _debugger()
    layout = dbg.layout
    registry = widget_module._instances  # ipywidgets' registry of live widgets (each with a comm)
    assert layout.model_id in registry
    dbg.close()
    assert layout.comm is None and layout not in registry.values()


@pytest.mark.parametrize(("key", "value"), [("status", "error"), ("error", "forged"), ("history", []), ("diff", {})])
def test_the_view_cannot_set_python_owned_traits(key: str, value: Any) -> None:
    dbg = _debugger()
    dbg.rerun(requires_grad={"0.bias": False})
    before = getattr(dbg, key)
    dbg.set_state({key: value})
    assert getattr(dbg, key) == before or key == "error"
    assert "may not set" in dbg.error and key in dbg.error


@pytest.mark.parametrize("key", ["pending", "options"])
def test_a_non_dict_from_the_view_is_refused_not_raised(key: str) -> None:
    dbg = _debugger()
    before = getattr(dbg, key)
    dbg.set_state({key: "not a dict"})
    assert getattr(dbg, key) == before and key in dbg.error


def test_requests_after_close_say_it_is_closed() -> None:
    dbg = _debugger()
    node = dbg.graph.find("AddmmBackward0")[0].id
    sent = MagicMock()
    dbg.close()
    dbg.send = sent  # type: ignore[method-assign]
    dbg._on_msg(dbg, {"type": "values", "request_id": "r1", "node": node, "key": "grad-in:0", "index": []}, [])
    reply = sent.call_args.args[0]
    assert reply["ok"] is False and "closed" in reply["error"]


def test_values_of_a_big_gradient_are_kept_by_a_rerun_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # Past keep_all_below only norms are kept; inspecting re-runs the step for the values. The hook's
    # float32 norm and the kept tensor's differ by ~3e-5 on 2M values: that is the same run.
    monkeypatch.setattr(gs.options, "keep_all_below", 1 << 20)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.Tanh(), nn.Linear(512, 512))
    dbg = gs.debugger(model, inputs=torch.randn(4096, 512), loss=lambda o: o.pow(2).sum())
    node = dbg.graph.find("AddmmBackward0")[0]
    views = dbg.inspect(node.id).tensors
    assert all(v.kept for v in views if v.section == "grad-in"), [v.note for v in views]
    dbg.close()


def test_a_refused_write_sends_pythons_value_back_to_the_view() -> None:
    dbg = _debugger()
    sent: list[list[str]] = []
    real = dbg.send_state
    dbg.send_state = lambda key=None: (sent.append(list(key) if key is not None else []), real(key))[1]  # type: ignore[method-assign]
    dbg.set_state({"status": "error"})
    dbg.set_state({"pending": "not a dict"})
    assert ["status"] in sent and ["pending"] in sent
    dbg.close()
