"""why() when the run's backward raised: torch's message is the run's error, shown once; each leaf
says in a line what happened. An in-place modification of a saved value names the node that needed
it and the line that edited it, in a runnable run and in a %%gradsight cell."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs

TORCH_SAYS = "one of the variables needed for gradient computation has been modified by an inplace operation"


class EditsItsSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc1(x))  # SigmoidBackward0 saves its result h
        h += 0.1  # and this edits it
        return self.fc2(h)


def test_an_inplace_edit_of_a_saved_value_is_said_once_with_its_line() -> None:
    torch.manual_seed(0)
    dbg = gs.debugger(EditsItsSigmoid(), inputs=torch.randn(5, 4), loss=lambda out: out.sum())
    assert dbg.status == "error" and TORCH_SAYS in (dbg.error or "")  # torch's own words: in the run's error
    assert {w.name for w in dbg.graph.missing} == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    for w in dbg.graph.missing:
        assert TORCH_SAYS not in w.message and "anomaly detection" not in w.message  # not repeated per leaf
        assert w.reason == "backward_error"
    why = dbg.why("fc1.weight")
    assert "the backward stopped at SigmoidBackward0, which needs a value it saved" in why.message
    assert "output 0 of Sigmoid, a [5, 8] torch.FloatTensor" in why.message and "(version 0 → 1)" in why.message
    assert "The in-place edit is likely `h += 0.1`" in why.message and ".clone()" in why.message
    assert why.where is not None and dbg.graph.node(why.where).name == "AddBackward0"
    assert why.source is not None and "h += 0.1" in why.source
    dbg.close()


def test_a_cells_inplace_edit_is_explained_not_called_off_the_path(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", shown.append)
    shell.run_cell("x = torch.randn(5, 4)", store_history=False)
    body = "w = torch.randn(4, 3, requires_grad=True)\nh = torch.exp(x @ w)\nh[:, 0] = 0.0\n"
    body += "loss = h.sum()\nloss.backward()"
    result = shell.run_cell("%%gradsight\n" + body, store_history=False)
    assert isinstance(result.error_in_exec, RuntimeError)
    (dbg,) = shown
    why = dbg.why("w")
    assert why.reason != "not_on_path" and "asked for other tensors only" not in why.message
    assert "stopped at ExpBackward0" in why.message and "`h[:, 0] = 0.0`" in why.message
    assert why.where is not None and dbg.graph.node(why.where).name == "CopySlices"
    assert [w.message for w in dbg.graph.missing] == [why.message]


def test_another_backward_error_is_said_in_its_first_sentence() -> None:
    model = nn.Linear(3, 2)
    model.weight.register_hook(lambda g: (_ for _ in ()).throw(ValueError("bad hook. " + "details " * 50)))
    other = nn.Linear(3, 2)
    dbg = gs.debugger(lambda: model(torch.ones(1, 3)).sum() * other(torch.ones(1, 3)).sum())
    answers = [w for w in dbg.graph.missing if "raised before reaching it" in w.message]
    assert answers and all("(ValueError: bad hook)" in w.message and "details" not in w.message for w in answers)
    dbg.close()


def test_an_inplace_edit_of_a_saved_input_is_named_by_the_op_torch_names() -> None:
    torch.manual_seed(0)
    w, x = torch.randn(4, 3, requires_grad=True), torch.randn(5, 4)

    def step() -> torch.Tensor:
        a = x @ w
        b = a * a  # MulBackward0 saves a
        a.add_(1)  # torch: "output 0 of Add": the value's grad_fn after the edit
        return (a + b).sum()

    dbg = gs.debugger(step)
    why = dbg.why("w")
    assert "stopped at MulBackward0" in why.message and "The in-place edit is likely `a.add_(1)`" in why.message
    assert why.source is not None and "a.add_(1)" in why.source
    dbg.close()


def test_an_optimizer_step_between_forward_and_backward_names_the_parameter() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    x = torch.randn(8, 4)

    def step() -> torch.Tensor:
        loss = model(x).pow(2).mean()
        opt.step()  # updates the weights the forward saved, before backward
        return loss

    dbg = gs.debugger(step)
    assert dbg.status == "error"
    why = dbg.why("model.0.weight")
    assert why.reason == "backward_error" and why.where == "leaf:model.2.weight", why
    assert "the parameter model.2.weight as the forward used it" in why.message and "optimizer.step()" in why.message
    assert "Make it out of place" not in why.message
    dbg.close()


def test_an_edit_off_the_path_and_an_edited_batch_say_where_to_look() -> None:
    torch.manual_seed(0)
    layer, head, x = nn.Linear(4, 4), nn.Linear(4, 1), torch.randn(8, 4)

    def edits_after_use() -> torch.Tensor:
        h = torch.exp(layer(x))
        y = head(h).sum()
        h.add_(1)  # h is not used after: the edit's node is not in the graph
        return y

    dbg = gs.debugger(edits_after_use)
    why = dbg.why("layer.weight")
    assert "torch names the value output 0 of Add, so look for an in-place add_ or += on it after " in why.message
    assert "`y = head(h).sum()`" in why.message
    dbg.close()

    def edits_the_batch() -> torch.Tensor:
        out = layer(x).pow(2).mean()
        x.sub_(x.mean(0))  # the batch, saved by the layer's matmul
        return out

    dbg = gs.debugger(edits_the_batch)
    why = dbg.why("layer.weight")
    assert "a tensor from outside the graph" in why.message and "shape [8, 4] edited in place" in why.message
    dbg.close()


class RaisesInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(5, 2)  # 3 != 5: the second layer raises
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc2(self.fc1(x))


def test_why_after_a_first_run_whose_forward_raised_answers_from_its_error_without_running_it_again() -> None:
    torch.manual_seed(0)
    model = RaisesInForward()
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    assert dbg.status == "error" and model.calls == 1
    why = dbg.why("fc1.weight")
    assert model.calls == 1, "why() ran the forward that raised again"
    assert why.reason == "unknown" and "before any backward ran" in why.message and "mat1 and mat2" in why.message


def test_why_on_a_live_step_whose_backward_raised_says_so_and_names_the_edited_parameter(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)  # capture every step
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))\n"
        "x, y = torch.randn(4, 4), torch.randn(4, 2)\nimport gradsight as gs\ndbg = gs.debugger(model)",
        store_history=False,
    )
    dbg = shell.user_ns["dbg"]
    body = "out = model(x)\nwith torch.no_grad():\n    model[2].weight.mul_(0.5)\n"
    shell.run_cell(body + "nn.functional.mse_loss(out, y).backward()", store_history=False)
    assert dbg.status == "error" and TORCH_SAYS in dbg.error
    for name in ("0.weight", "2.weight"):
        why = dbg.why(name)
        assert why.reason == "backward_error" and "2.weight was modified in place" in why.message, why
    assert {w.name: w.reason for w in dbg.graph.missing}.get("0.weight") == "backward_error"
    dbg.close()
