"""why() of a NaN/Inf gradient whose NaN/Inf came out of the forward: the node whose backward first
passed them on is not blamed when the values it saved were NaN/Inf already; the answer points
upstream, at the op that made them from finite inputs, the parameter already NaN/Inf, or the input
from outside the graph."""

from __future__ import annotations

import math
from typing import Any

import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


def test_a_float16_overflow_under_autocast_is_blamed_on_the_layer_whose_output_overflowed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.LayerNorm(64), nn.Linear(64, 1))
    with torch.no_grad():
        model[2].weight.mul_(1e5)  # its outputs pass float16's 65504
    x, y = 10 * torch.randn(8, 16), torch.randn(8, 1)

    def step() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.float16):
            out = model(x)
        return nn.functional.mse_loss(out.float(), y)

    dbg = gs.debugger(step)
    layer2 = next(n for n in dbg.graph.nodes if n.module == "model.2" and n.name == "AddmmBackward0")
    for name in ("model.0.weight", "model.2.weight", "model.4.bias"):
        why = dbg.why(name)
        assert why.reason == "nonfinite" and why.where == layer2.id, why
        assert "forward values already did" in why.message and "float16" in why.message
        assert "MseLossBackward0, which received a finite gradient" not in why.message
    assert {w.name: w.where for w in dbg.graph.missing}["model.0.weight"] == layer2.id
    dbg.close()


def test_a_nan_parameter_is_named_as_where_the_nan_comes_from() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[2].weight[0, 3] = math.nan  # as after a diverged step
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.mse_loss(out, y))
    for name in ("0.bias", "0.weight", "2.bias"):
        why = dbg.why(name)
        assert why.reason == "nonfinite" and why.where == "leaf:2.weight", why
        assert "They come from 2.weight, whose values are already NaN/Inf" in why.message
    dbg.close()


def test_a_nan_parameter_its_layer_did_not_save_is_named_as_a_suspect() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[0].weight[3, 1] = math.nan  # the first layer saves its input, not its weight
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.mse_loss(out, y))
    why = dbg.why("0.bias")
    assert why.reason == "nonfinite" and why.where == "0/AddmmBackward0#0", why
    assert "but it did not save the parameters 0.bias or 0.weight: either one of them already held" in why.message
    assert "ReluBackward0" not in why.message.split("They first appear")[1]  # a ReLU makes no NaN
    dbg.close()


def test_a_cell_dividing_by_a_zero_std_points_at_the_input_outside_the_graph(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = torch.nn.Linear(3, 1)\nx = torch.randn(8, 3)\nx[:, 1] = 5.0\n"
        "y = torch.randn(8, 1)",
        store_history=False,
    )
    body = "xs = (x - x.mean(0)) / x.std(0)\nout = model(xs)\nloss = ((out - y) ** 2).mean()\nloss.backward()"
    dbg: Any = shell.run_cell("%%gradsight\n" + body, store_history=False).result
    addmm = dbg.graph.find("AddmmBackward0")[0]
    for name in ("model.weight", "model.bias"):
        why = dbg.why(name)
        assert why.reason == "nonfinite" and why.where == addmm.id, why
        assert "saved its mat1 with 8 NaN" in why.message and "outside the graph" in why.message
        assert "negative base" not in why.message  # PowBackward0 only passed the NaN on
        assert why.source is not None and "out = model(xs)" in why.source


def test_a_live_step_whose_parameter_is_nan_names_it_not_to_check_a_grad_output(monkeypatch: Any) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    with torch.no_grad():
        model[2].weight[0, 3] = math.nan  # as after a diverged step
    dbg = gs.debugger(model)
    nn.functional.mse_loss(model(torch.randn(32, 4)), torch.randn(32, 1)).backward()
    why = dbg.why("0.weight")  # the saved tensors the live step kept are summarized for why() (why_kept)
    assert why.reason == "nonfinite" and why.where == "leaf:2.weight", why
    assert "saved its mat2 with 1 NaN" in why.message and "They come from 2.weight, whose values" in why.message
    assert "grad_output you gave" not in why.message and "p.isfinite()" not in why.message
    dbg.close()


def test_a_nan_parameter_past_the_eager_statistics_is_named_from_its_values() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in range(3)],
                          nn.Linear(16, 1))  # fmt: skip
    with torch.no_grad():
        model[1].linear1.weight[0, 0] = math.nan
    x, y = torch.randn(2, 5, 16), torch.randn(2, 5, 1)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: nn.functional.mse_loss(out, y))
    assert len(dbg.graph.nodes) > 128  # store.EAGER_NODES: no statistics of saved tensors
    for name in ("0.linear1.weight", "1.linear1.weight", "3.weight"):
        why = dbg.why(name)
        assert why.reason == "nonfinite" and why.where == "leaf:1.linear1.weight", why
        assert "1.linear1.weight (1 NaN) holds NaN/Inf" in why.message
        assert "which received a finite gradient and passed NaN/Inf on" not in why.message
    assert {w.name: w.where for w in dbg.graph.missing}["3.weight"] == "leaf:1.linear1.weight"
    dbg.close()


def test_a_nan_loss_without_statistics_does_not_blame_the_loss_node() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(40)])  # > 128 nodes
    x = torch.randn(4, 8)
    x[0, 0] = math.nan  # the batch, outside the graph's leaves
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).mean())
    assert len(dbg.graph.nodes) > 128
    why = dbg.why("0.weight")
    assert why.reason == "nonfinite" and "the loss itself is nan" in why.message
    assert "which received a finite gradient" not in why.message and "only passed it on" not in why.message
    dbg.close()


def test_a_nan_reaching_cross_entropy_is_not_blamed_on_log_softmax() -> None:
    # LogSoftmaxBackward0 saves only its result, NaN here; log_softmax makes no NaN of finite inputs
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    with torch.no_grad():
        model[2].weight[0, 0] = math.nan
    targets = torch.tensor([0, 1, 2, 3, 0])
    dbg = gs.debugger(model, inputs=torch.randn(5, 8), loss=lambda out: nn.functional.cross_entropy(out, targets))
    why = dbg.why("0.weight")
    assert why.reason == "nonfinite" and why.where == "leaf:2.weight", why
    assert "log of 0" not in why.message and "They come from 2.weight" in why.message
    dbg.close()


def test_an_exp_that_overflows_is_named_for_every_leaf_with_log_space_advice() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    with torch.no_grad():
        model[2].bias.fill_(100.0)  # exp(100) is Inf in float32
    dbg = gs.debugger(model, inputs=torch.randn(16, 4), loss=lambda out: torch.exp(out).mean())
    (exp,) = dbg.graph.find("ExpBackward0")
    for name in ("0.weight", "2.weight", "2.bias"):
        why = dbg.why(name)
        assert why.reason == "nonfinite" and why.where == exp.id, why
        assert "ExpBackward0 overflowed" in why.message and "16 Inf" in why.message
        assert "logsumexp" in why.message and "passed NaN/Inf on" not in why.message
    dbg.close()


def test_a_nan_in_a_batchnorm_running_var_names_the_buffer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).eval()
    model[1].running_var[2] = math.nan
    dbg = gs.debugger(model, inputs=torch.randn(16, 4), loss=lambda out: out.pow(2).mean())
    for name in ("0.weight", "3.weight"):
        why = dbg.why(name)
        assert why.reason == "nonfinite" and "They come from 1.running_var" in why.message, why
        assert "cannot tell" not in why.message
    dbg.close()


def test_a_division_by_a_zero_temperature_is_named_not_its_input_called_a_parameter() -> None:
    torch.manual_seed(0)
    head, xb, yb = nn.Linear(8, 4), torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    temperature = torch.tensor(0.0)
    dbg = gs.debugger(lambda: nn.functional.cross_entropy(head(xb) / temperature, yb))
    (div,) = dbg.graph.find("DivBackward0")
    why = dbg.why("head.weight")
    assert why.reason == "nonfinite" and why.where == div.id, why
    assert "its divisor is 0" in why.message and "parameter" not in why.message
    dbg.close()


def test_a_live_loss_that_makes_nan_from_finite_parameters_says_they_are_finite(monkeypatch: Any) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    dbg = gs.debugger(model)
    out = model(torch.randn(32, 4))
    torch.log(torch.sigmoid(out) * 0).mean().backward()  # log(0) in the loss, after the model
    why = dbg.why("0.weight")
    assert why.reason == "nonfinite" and "no parameter of the graph holds NaN/Inf now" in why.message, why
    assert "p.isfinite()" not in why.message
    dbg.close()
