"""Source lines of a runnable run's nodes: never the line that made the debugger, and two calls of
one function on one line told apart."""

from __future__ import annotations

import sys

import torch
from torch import nn

import gradsight as gs


def test_a_bare_sequentials_ops_get_no_line_not_the_debugger_call() -> None:
    # no frame of the user's runs a bare nn.Sequential's ops: they named `dbg = gs.debugger(...)`,
    # and why() showed that line as the cause's source
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    with torch.no_grad():
        model[0].bias.fill_(-5.0)  # every ReLU input negative: layer 0 gets a zero gradient
    dbg = gs.debugger(model, inputs=torch.randn(16, 8), loss=lambda out: out.pow(2).sum())
    ops = [n for n in dbg.graph.nodes if n.module is not None and not n.id.startswith("leaf:")]
    assert ops and all(n.source is None for n in ops), [(n.id, n.source) for n in ops]
    pow_source = dbg.graph.find("PowBackward0")[0].source  # the loss lambda is the user's code
    assert pow_source is not None and "loss=lambda out: out.pow(2).sum()" in pow_source
    why = dbg.why("0.weight")
    assert why.where == "1/ReluBackward0#0" and why.source is None

    def from_elsewhere() -> gs.Graph:  # a re-run from another frame names no frame above the run either
        return dbg.rerun()

    again = from_elsewhere()
    assert again.find("AddmmBackward0")[0].source is None
    assert again.find("PowBackward0")[0].source == pow_source


def test_a_functions_own_lines_stay() -> None:
    lin = nn.Linear(4, 2)
    x = torch.randn(3, 4)

    def step() -> torch.Tensor:
        return lin(x).tanh().sum()

    dbg = gs.debugger(step)
    assert dbg.graph.find("TanhBackward0")[0].source.endswith("return lin(x).tanh().sum()")  # type: ignore[union-attr]


def test_two_calls_of_one_function_on_one_line_are_told_apart() -> None:
    lin = nn.Linear(4, 1)
    x = torch.randn(6, 4)

    def bce(out: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(out)
        return -(torch.log(p) + torch.log(1 - p)).mean()

    dbg = gs.debugger(lin, inputs=x, loss=bce)
    logs = {n.id: n.source for n in dbg.graph.find("LogBackward0")}
    if sys.version_info < (3, 11):  # no co_positions: both name the line alone
        assert len(set(logs.values())) == 1
        return
    assert len(logs) == 2 and len(set(logs.values())) == 2, logs
    line = "return -(torch.log(p) + torch.log(1 - p)).mean()"
    column = len("        return -(") + 1
    ends = sorted(s.rpartition("  ← ")[2] for s in logs.values() if s is not None)
    assert ends == ["torch.log(1 - p)", "torch.log(p)"], logs
    assert any(f":{column}  {line}  ← torch.log(p)" in (s or "") for s in logs.values()), logs
    # a line with one call of each function reads as before: no column, no call
    sigmoid = dbg.graph.find("SigmoidBackward0")[0].source
    assert sigmoid is not None
    place, text = sigmoid.split("  ", 1)
    assert text == "p = torch.sigmoid(out)" and place.count(":") == 1, sigmoid


def test_a_function_and_a_method_of_one_op_on_one_line_are_told_apart() -> None:
    w = torch.rand(5, requires_grad=True)

    def step() -> torch.Tensor:
        p = torch.sigmoid(w)
        return (torch.log(p) + (1 - p).log()).sum()

    dbg = gs.debugger(step)
    logs = [n.source for n in dbg.graph.find("LogBackward0")]
    if sys.version_info < (3, 11):  # no co_positions: both name the line alone
        return
    assert len(logs) == 2 and len(set(logs)) == 2, logs
    assert sorted(str(s).rpartition("  ← ")[2] for s in logs) == ["(1 - p).log()", "torch.log(p)"], logs
    dbg.close()
