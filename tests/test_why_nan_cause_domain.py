"""why() of a NaN gradient made by an op at the edge of its domain: sqrt of a negative number, log of
0, acos past ±1, a negative number to a fractional power, 0 / 0. It names what the op made in the
forward from finite inputs (not "the derivative is infinite at 0" when no value is 0), and where a
torch.where / masked_fill discarded those elements it says why the gradient is NaN all the same
(0 × NaN) and advises making the input safe *before* the op — advice checked here to give finite
gradients, where the old "sqrt(x + eps)" did not."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import gradsight as gs

Fn = Callable[[torch.Tensor], torch.Tensor]


def _grad(f: Fn, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_()
    f(x).sum().backward()
    assert x.grad is not None
    return x.grad


def _why(f: Fn, x: torch.Tensor, op: str) -> tuple[gs.Why, str]:
    """why() of ``x``'s gradient in ``f(x).sum()``, with the id of the (first) node named ``op``;
    checks that gradsight left ``x`` as it was."""
    before = x.detach().clone()
    dbg = gs.debugger(lambda: f(x).sum())
    why = dbg.why("x")
    node = dbg.graph.find(op)[0].id
    assert {w.name: w.where for w in dbg.graph.missing}["x"] == why.where  # the view's list says the same
    dbg.close()
    assert x.grad is None and torch.equal(x.detach(), before)
    return why, node


SIGNED = torch.tensor([-2.0, -0.5, 0.3, 0.7, 1.5, -1.2])  # no zeros; negatives and past ±1


# (op, f with the unsafe op in a where branch, the same with the input made safe first, what is said)
MASKED: list[tuple[str, Fn, Fn, str]] = [
    ("SqrtBackward0", lambda x: torch.where(x > 0, x.sqrt(), x),
     lambda x: torch.where(x > 0, torch.where(x > 0, x, 1).sqrt(), x), "sqrt of a negative number is NaN"),
    ("PowBackward0", lambda x: torch.where(x > 0, x.pow(0.5), x),
     lambda x: torch.where(x > 0, torch.where(x > 0, x, 1).pow(0.5), x), "a negative number to the power 0.5 is NaN"),
    ("AcosBackward0", lambda x: torch.where(x.abs() < 1, x.acos(), x),
     lambda x: torch.where(x.abs() < 1, torch.where(x.abs() < 1, x, 0).acos(), x), "values outside [-1, 1]"),
    ("AsinBackward0", lambda x: torch.where(x.abs() < 1, x.asin(), x),
     lambda x: torch.where(x.abs() < 1, torch.where(x.abs() < 1, x, 0).asin(), x), "asin of those is NaN"),
    ("SqrtBackward0", lambda x: x.sqrt().masked_fill(x <= 0, 0.0),
     lambda x: torch.where(x > 0, x, 1).sqrt().masked_fill(x <= 0, 0.0), "sqrt of a negative number is NaN"),
]  # fmt: skip


@pytest.mark.parametrize(("op", "f", "safe", "said"), MASKED, ids=[f"{m[0]}-{i}" for i, m in enumerate(MASKED)])
def test_a_nan_made_in_a_discarded_branch_is_named_with_the_double_where(op: str, f: Fn, safe: Fn, said: str) -> None:
    x = SIGNED.clone().requires_grad_()
    assert not _grad(f, x).isfinite().all() and _grad(safe, x).isfinite().all()  # the case, and its fix
    why, node = _why(f, x, op)
    assert why.reason == "nonfinite" and why.where == node, why
    assert f"{op} made NaN in the forward from finite inputs" in why.message and said in why.message
    assert "discarded those elements" in why.message and "0 × NaN" in why.message
    assert "the double where: torch.where(ok, torch.where(ok, x, " in why.message
    assert "infinite at 0" not in why.message and "sqrt(x + eps)" not in why.message


def test_the_tour_repro_sqrt_over_negatives_in_a_where_and_the_advice_that_fixes_it() -> None:
    torch.manual_seed(0)
    a = torch.randn(6, requires_grad=True)
    assert (a != 0).all()
    dbg = gs.debugger(lambda: torch.where(a > 0, a.sqrt(), a).sum())
    why = dbg.why("a")
    (sqrt,) = dbg.graph.find("SqrtBackward0")
    (where,) = dbg.graph.find("WhereBackward0")
    assert why.where == sqrt.id and "WhereBackward0 discarded those elements" in why.message, why
    assert "4 NaN" in why.message and "x.clamp(min=eps).sqrt()" in why.message
    assert "An epsilon (x + eps) does not help a negative input" in why.message
    dbg.close()
    assert where.id != why.where
    clamped = _grad(lambda x: torch.where(x > 0, x.clamp(min=1e-6).sqrt(), x), a)
    assert clamped.isfinite().all()  # the advised clamp fixes it (an epsilon inside does not)
    assert not _grad(lambda x: torch.where(x > 0, (x + 1e-6).sqrt(), x), a).isfinite().all()


@pytest.mark.parametrize(
    ("f", "op", "said"),
    [
        (lambda x: x.sqrt(), "SqrtBackward0", "sqrt of a negative number is NaN"),
        (lambda x: (x * 2).asin(), "AsinBackward0", "values outside [-1, 1]"),
        (lambda x: x.pow(1.5), "PowBackward0", "a negative number to the power 1.5 is NaN"),
    ],
)
def test_a_nan_made_in_the_forward_that_reaches_the_loss_says_keep_the_input_in_the_domain(
    f: Fn, op: str, said: str
) -> None:
    x = SIGNED.clone().requires_grad_()
    why, node = _why(f, x, op)
    assert why.where == node and f"{op} made NaN in the forward from finite inputs" in why.message, why
    assert said in why.message and "Keep its input in the domain" in why.message
    assert "discarded" not in why.message and "infinite at" not in why.message


def test_log_of_zero_in_a_where_branch_names_log_and_the_safe_input() -> None:
    x = torch.tensor([0.0, 1.0, 2.0, 0.5], requires_grad=True)
    why, node = _why(lambda t: torch.where(t > 0, t.log(), t), x, "LogBackward0")
    assert why.where == node and "LogBackward0 made Inf in the forward from finite inputs" in why.message, why
    assert "its input holds 0" in why.message and "WhereBackward0 discarded" in why.message
    assert "torch.where(ok, torch.where(ok, x, 1).log(), other)" in why.message


def test_a_zero_over_zero_in_a_where_branch_names_the_zero_divisor() -> None:
    x = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    why, node = _why(lambda t: torch.where(t != 0, t / t, t), x, "DivBackward0")
    assert why.where == node and "its divisor holds 0" in why.message and "WhereBackward0 discarded" in why.message
    assert "y / torch.where(ok, d, 1)" in why.message


def test_a_divisor_that_may_hold_zero_under_a_where_gets_the_double_where_hint() -> None:
    d = torch.tensor([0.0, 1.0, -2.0, 3.0])  # spans 0: its statistics cannot say it holds one
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    why, node = _why(lambda t: torch.where(d != 0, t / d, t), x, "DivBackward0")
    assert why.where == node and "A division by zero" in why.message, why
    assert "WhereBackward0 above it discards some of its output" in why.message and "double where" in why.message


def test_sqrt_at_zero_keeps_its_infinite_derivative_and_under_a_where_says_zero_times_infinity() -> None:
    x = torch.tensor([0.0, 1.0, 4.0], requires_grad=True)
    plain, node = _why(lambda t: (t * t).sqrt(), x, "SqrtBackward0")
    assert plain.where == node and "its output holds 0, where sqrt's derivative" in plain.message, plain
    assert "(x + eps).sqrt()" in plain.message and "made NaN" not in plain.message and "discarded" not in plain.message
    masked, node = _why(lambda t: torch.where(t > 0, t.sqrt(), t), x, "SqrtBackward0")
    assert masked.where == node and "0 × ∞ is NaN" in masked.message and "made NaN" not in masked.message


def test_an_exp_overflow_discarded_by_a_where_says_zero_times_infinity() -> None:
    # pytorch/pytorch#68425: torch.where(a <= 0, exp(a), 1 + a) at a = 100
    x = torch.tensor([100.0, -1.0], requires_grad=True)
    why, node = _why(lambda t: torch.where(t <= 0, t.exp(), 1 + t), x, "ExpBackward0")
    assert why.where == node and "overflowed" in why.message, why
    assert "WhereBackward0 discarded those elements" in why.message
    assert "torch.where(ok, torch.where(ok, x, 0).exp(), other)" in why.message


def test_an_op_that_made_the_nan_below_the_one_whose_backward_carried_it_is_named() -> None:
    x = SIGNED.clone().requires_grad_()
    why, log = _why(lambda t: (t * 1).log().sqrt(), x, "LogBackward0")
    assert why.where == log and "LogBackward0 made NaN in the forward from finite inputs" in why.message, why
    assert "log of those is NaN" in why.message and "the backward of SqrtBackward0 was the first" in why.message


@pytest.mark.parametrize(
    ("f", "op", "said"),
    [
        (lambda x: torch.where(x > 0, x.sqrt() ** 2, x), "SqrtBackward0: sqrt of a negative number is NaN",
         "WhereBackward0 discarded those elements"),
        (lambda x: x.log() ** 2, "LogBackward0: its input has values below 0", "Keep its input in the domain: "
         "x.clamp(min=eps).log()"),
    ],
)  # fmt: skip
def test_the_op_that_forward_cause_finds_upstream_is_told_by_its_domain(f: Fn, op: str, said: str) -> None:
    x = SIGNED.clone().requires_grad_()
    why, _ = _why(f, x, "PowBackward0")  # PowBackward0 saved the NaN: the cause is found below it
    assert why.reason == "nonfinite" and op in why.message and said in why.message, why
    assert "A NaN in a forward comes from" not in why.message


def test_an_input_that_already_held_nan_is_not_blamed_on_sqrts_domain() -> None:
    x = torch.tensor([4.0, 1.0, 9.0], requires_grad=True)
    outside = torch.tensor([1.0, math.nan, 1.0])  # a batch from outside the graph
    why, _ = _why(lambda t: (t * outside).sqrt(), x, "SqrtBackward0")
    assert why.reason == "nonfinite" and "made NaN in the forward" not in why.message, why
    assert "sqrt of a negative number" not in why.message


def test_without_statistics_a_sqrt_under_a_where_names_both_causes_and_the_double_where() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(40)])  # > 128 nodes: no statistics
    dbg = gs.debugger(model, inputs=torch.randn(4, 8), loss=lambda out: torch.where(out > 0, out.sqrt(), out).sum())
    assert len(dbg.graph.nodes) > 128
    why = dbg.why("0.weight")
    assert why.where == dbg.graph.find("SqrtBackward0")[0].id, why
    assert "sqrt of a negative number is NaN (clamp the input first" in why.message
    assert "WhereBackward0 above it discards some of its output" in why.message and "double where" in why.message
    dbg.close()
