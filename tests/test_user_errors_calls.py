"""The user's own callables given what gradsight passes them: ``fn()`` with no arguments, ``loss(output)``
with one. A mistake raises at once, saying what to pass (``call_checks.check_function`` / ``check_loss``);
one showing neither a signature nor a schema is the user's error, not gradsight's bug (``tracebacks.own_bug``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradsight as gs
from gradsight._capture.tracebacks import OWN_BUG


def setup() -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Linear(3, 2), torch.randn(4, 3)


def runs_like_torch(model: nn.Module, x: torch.Tensor, loss: Callable[..., Any]) -> gs.Debugger:
    """A runnable debugger of ``model(x)`` under ``loss`` that ran, and whose weight's gradient norm is torch's."""
    dbg = gs.debugger(model, inputs=x, loss=loss)
    assert dbg.status == "ready", dbg.error
    (g,) = torch.autograd.grad(loss(model(x)), [model.weight])
    node = next(n for n in dbg.graph.leaves if n.leaf is not None and n.leaf.name == "weight")
    assert node.grad_in[0] is not None and node.grad_in[0].norm == pytest.approx(float(g.norm()), rel=1e-5)
    return dbg


def test_a_function_needing_arguments_raises_at_once() -> None:
    model, _ = setup()

    def loss_fn(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x).sum()

    with pytest.raises(TypeError, match=r"calls fn\(\) with no arguments, but loss_fn\(model, x\) needs some") as e:
        gs.debugger(loss_fn)
    assert "gradsight.debugger(lambda: loss_fn(model, x))" in str(e.value)
    assert model.weight.grad is None


@pytest.mark.parametrize(
    ("loss", "says"),
    [
        (F.mse_loss, "loss=lambda out: F.mse_loss(out, target)"),
        (F.cross_entropy, "loss=lambda out: F.cross_entropy(out, target)"),
        (nn.MSELoss(), "MSELoss.forward(input, target) needs more"),
        (nn.CrossEntropyLoss(), "loss=lambda out: criterion(out, target)"),
        (lambda out, target: F.mse_loss(out, target), "the lambda(out, target) needs more"),
        (lambda: 0, "the lambda() takes no argument"),
    ],
)
def test_a_loss_not_of_the_output_alone_raises_at_once(loss: Callable[..., Any], says: str) -> None:
    model, x = setup()
    with pytest.raises(TypeError, match="loss= is called with the model's output") as e:
        gs.debugger(model, inputs=x, loss=loss)
    assert says in str(e.value), str(e.value)


def decorated(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:  # supplies the argument its function's signature asks for
        return fn(*args, torch.ones(()))

    return wrapper


@pytest.mark.parametrize(
    "loss",
    [
        torch.sum,  # a builtin: no signature to check, and it takes the output
        lambda *outs: outs[0].sum(),
        lambda out, scale=2.0: out.sum() * scale,
        functools.partial(F.mse_loss, target=torch.zeros(4, 2)),
        decorated(lambda out, scale: out.sum() * scale),
    ],
)
def test_losses_that_take_the_output_run(loss: Callable[..., Any]) -> None:
    model, x = setup()
    dbg = runs_like_torch(model, x, loss)
    dbg.close()


def test_a_loss_showing_no_signature_given_one_argument_is_the_users_error() -> None:
    model, x = setup()
    loss = functools.partial(torch._C._nn.mse_loss)  # no signature, no ATen name: called, and it fails
    dbg = gs.debugger(model, inputs=x, loss=loss)
    assert dbg.status == "error"
    assert OWN_BUG not in dbg.error and "please report" not in dbg.error, dbg.error
    assert dbg.error.splitlines()[-1].startswith("TypeError: mse_loss() missing 1 required positional argument")
    dbg.close()


def test_a_call_of_gradsights_own_whose_arguments_do_not_bind_stays_its_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight._capture import finish, roots

    monkeypatch.setattr(roots, "_value_of", finish._renorm)  # called with 1 argument, takes 4
    model, x = setup()
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.sum())
    assert dbg.status == "error" and dbg.error.startswith(OWN_BUG), dbg.error
    assert "roots.py" in dbg.error  # where the bug is
    assert dbg.error.splitlines()[-1].startswith("TypeError: _renorm() missing 3 required positional arguments")
    dbg.close()
