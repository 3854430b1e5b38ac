"""torch builtins given as the user's callables: ``gradsight.debugger(torch.randn)`` and
``loss=F.cosine_similarity`` (a builtin needing two arguments) refuse at once (``call_checks`` reads
the op's ATen overloads, or a script function's schema: neither shows a signature), and a TypeError
raised right at gradsight's call of a callable the user gave is the user's, whatever its message
(torch's "received an invalid combination of arguments"), while one of gradsight's own calls stays its
bug (``tracebacks.own_bug``)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradsight as gs
from gradsight._capture.tracebacks import OWN_BUG
from tests.test_user_errors_calls import runs_like_torch


def setup() -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(3, 2), torch.randn(4, 3)


@pytest.mark.parametrize("fn", [torch.randn, torch.zeros, torch.sum, torch._C._nn.mse_loss])
def test_a_torch_builtin_needing_arguments_is_refused_at_once(fn: Callable[..., Any]) -> None:
    with pytest.raises(TypeError, match=r"calls fn\(\) with no arguments") as e:
        gs.debugger(fn)
    says = str(e.value)
    assert f"{fn.__name__}() needs some" in says, says
    assert "a function passed alone must take no arguments and return the loss" in says
    assert "gradsight.debugger(lambda: torch.randn(3, requires_grad=True).sum())" in says
    assert OWN_BUG not in says


def scripted(fn: Callable[..., Any]) -> Any:
    """``torch.jit.script(fn)``: a function showing its schema, not a signature (deprecated, still met)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(fn)


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out - target).pow(2).mean()


def squared_sum(out: torch.Tensor) -> torch.Tensor:
    return out.pow(2).sum()


scripted_mse, scripted_sum = scripted(mse), scripted(squared_sum)


@pytest.mark.parametrize(
    ("loss", "says"),
    [
        (torch._C._nn.mse_loss, "torch._C._nn.mse_loss(input, target) needs more"),
        (F.cosine_similarity, "loss=lambda out: torch.cosine_similarity(out, x2)"),
        (torch.dist, "torch.dist(input, other) needs more"),
        (scripted_mse, "loss=lambda out: mse(out, target)"),
    ],
)
def test_a_builtin_loss_needing_more_than_the_output_is_refused_at_once(loss: Callable[..., Any], says: str) -> None:
    model, x = setup()
    with pytest.raises(TypeError, match="loss= is called with the model's output only") as e:
        gs.debugger(model, inputs=x, loss=loss)
    assert says in str(e.value) and "pass the rest yourself" in str(e.value), str(e.value)
    assert model.weight.grad is None


class SquaredSum(nn.Module):
    def forward(self, out: torch.Tensor) -> torch.Tensor:
        return out.pow(2).sum()


@pytest.mark.parametrize(
    "loss", [torch.sum, torch.mean, torch.amax, torch.linalg.vector_norm, torch.norm, scripted_sum, SquaredSum()]
)
def test_losses_of_the_output_alone_run(loss: Callable[..., Any]) -> None:
    model, x = setup()
    dbg = runs_like_torch(model, x, loss)
    assert model.weight.grad is None
    dbg.close()


def test_builtins_that_need_no_arguments_are_not_refused() -> None:
    x = torch.randn(3, requires_grad=True) * 2
    dbg = gs.debugger(x.sum)  # a tensor's bound method: sum() of x needs nothing more
    assert dbg.status == "ready", dbg.error
    assert dbg.graph.run is not None and dbg.graph.run.loss == pytest.approx(float(x.detach().sum()))
    dbg.close()
    dbg = gs.debugger(torch.is_grad_enabled)  # runs: it returns a bool, which the run says
    assert dbg.status == "error" and dbg.error is not None
    assert OWN_BUG not in dbg.error and "returned bool" in dbg.error, dbg.error
    dbg.close()


def test_a_builtin_function_that_fails_when_called_is_the_users_error() -> None:
    fn = functools.partial(torch.randn)  # no signature and no ATen name: only the call tells
    dbg = gs.debugger(fn)
    assert dbg.status == "error" and dbg.error is not None
    assert OWN_BUG not in dbg.error and "please report" not in dbg.error, dbg.error
    assert dbg.error.startswith("TypeError: randn() received an invalid combination of arguments - got ()"), dbg.error
    dbg.close()


def test_a_builtin_loss_torchs_parser_refuses_is_the_users_error() -> None:
    model, x = setup()
    dbg = gs.debugger(model, inputs=x, loss=torch.randn)  # randn(output): no signature, runs and fails
    assert dbg.status == "error" and dbg.error is not None
    assert OWN_BUG not in dbg.error and "please report" not in dbg.error, dbg.error
    assert dbg.error == "TypeError: randn(): argument 'size' (position 1) must be tuple of ints, not Tensor", dbg.error
    assert model.weight.grad is None
    dbg.close()


@pytest.mark.parametrize("wrong", [F.mse_loss, torch._C._nn.mse_loss])
def test_gradsights_own_call_of_a_function_not_its_own_stays_its_bug(
    monkeypatch: pytest.MonkeyPatch, wrong: Callable[..., Any]
) -> None:
    from gradsight._capture import roots

    monkeypatch.setattr(roots, "_value_of", wrong)  # gradsight's call: mse_loss(loss), one argument short
    model, x = setup()
    dbg = gs.debugger(model, inputs=x, loss=torch.sum)  # a builtin of the user's, in the failing frame too
    assert dbg.status == "error" and dbg.error is not None and dbg.error.startswith(OWN_BUG), dbg.error
    assert "roots.py" in dbg.error  # where the bug is
    assert dbg.error.splitlines()[-1].startswith("TypeError: mse_loss() missing 1 required positional argument")
    dbg.close()


def test_a_type_error_deeper_in_gradsights_code_stays_its_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight import _api
    from gradsight._capture import roots

    def deeper(loss: torch.Tensor) -> Any:
        return _api._as_tensors(float(loss.detach()), torch)  # iterates a float: a TypeError inside gradsight's _api

    monkeypatch.setattr(roots, "_value_of", deeper)
    model, x = setup()
    fn = functools.partial(lambda: model(x).sum())
    dbg = gs.debugger(fn)
    assert dbg.status == "error" and dbg.error is not None and dbg.error.startswith(OWN_BUG), dbg.error
    assert "_api.py" in dbg.error, dbg.error
    assert dbg.error.splitlines()[-1] == "TypeError: 'float' object is not iterable", dbg.error
    dbg.close()
