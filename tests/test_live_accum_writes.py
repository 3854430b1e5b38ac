"""Live mode: a forgotten ``zero_grad()`` is warned of when the ``.grad`` holding the sum across steps
is written between the backward and the optimizer step by one rescale of it — ``clip_grad_norm_``
(one clip coefficient), a ``GradScaler``'s unscale then a clip, ``clip_grad_value_`` that clamps
nothing — and not when it is zeroed and written anew (``zero_grad(set_to_none=False)``: the usual
clipped loop, a GAN's discriminator whose ``.grad`` the generator's loss added to). A
``clip_grad_value_`` that clamps some elements is no single rescale: not told apart, nothing is said.
The user's parameters and ``.grad`` (values, and the writes to each ``.grad``) are the same with the
debugger as without.

(A ``GradScaler``'s ``unscale_`` alone, on the CPU, leaves ``.grad._version`` as it was: the step
sees the sum unwritten, as before these rescales were told apart.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import gradsight as gs
from tests.run_zoo import MLP

ACROSS = "Gradients are accumulating across steps"
MAX_NORM = 1e-3  # far below the gradients' norm: clip_grad_norm_ rescales every step


pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def across(dbg: gs.Debugger) -> list[str]:
    return [n for n in dbg.graph.notes if ACROSS in n]


def clip_norm(model: nn.Module) -> None:
    total = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    assert float(total) > 10 * MAX_NORM  # it clipped: every .grad rescaled in place


def clip_value_above(model: nn.Module) -> None:
    torch.nn.utils.clip_grad_value_(model.parameters(), 1e6)  # clamps nothing, writes every .grad


@pytest.mark.parametrize("write", [clip_norm, clip_value_above], ids=["clip_grad_norm_", "clip_grad_value_"])
def test_a_forgotten_zero_grad_is_warned_of_through_a_rescale_before_the_step(
    write: Callable[[nn.Module], None],
) -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for i in range(5):
        model(x).pow(2).mean().backward()  # no zero_grad(): adds to the .grad the last step used
        versions = [p.grad._version for p in model.parameters() if p.grad is not None]
        write(model)
        assert [p.grad._version for p in model.parameters() if p.grad is not None] != versions  # written
        opt.step()
        shown = across(dbg)
        assert len(shown) == (1 if i >= 2 else 0), dbg.graph.notes  # (said by the step after the one used)
    assert "layer1.weight" in shown[0] and "layer2.bias" in shown[0]
    assert f"the optimizer step after step {dbg.graph.run.step - 1}" in shown[0]
    dbg.close()


@pytest.mark.parametrize("clip", [True, False])
def test_a_forgotten_zero_grad_under_a_grad_scaler_is_warned_of(clip: bool) -> None:
    """The AMP recipe: scale the loss, unscale_ (times 1/scale), clip, step through the scaler."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    assert scaler.is_enabled()
    dbg = gs.debugger(model)
    for i in range(5):
        scaler.scale(model(x).pow(2).mean()).backward()
        scaler.unscale_(opt)
        if clip:
            clip_norm(model)
        scaler.step(opt)
        scaler.update()
        assert len(across(dbg)) == (1 if i >= 2 else 0), dbg.graph.notes
    assert "layer1.weight" in across(dbg)[0]
    dbg.close()


def test_the_clipped_loop_zeroing_grads_in_place_gets_no_warning() -> None:
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(5):
        opt.zero_grad(set_to_none=False)
        model(torch.randn(4, 8)).pow(2).mean().backward()
        clip_norm(model)
        opt.step()
        assert not across(dbg), dbg.graph.notes
    dbg.close()


def test_a_discriminator_zeroed_in_place_then_clipped_is_no_accumulation() -> None:
    """The generator's loss through D adds to the .grad D's step used (so D's next step decides);
    od.zero_grad(set_to_none=False) then D's own backward and a clip write that same .grad: a new
    gradient, not a rescale of the sum."""
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
    disc = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
    og, od = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (gen, disc))
    bce = nn.BCEWithLogitsLoss()
    dbg = gs.debugger(disc)
    for _ in range(5):
        fake = gen(torch.randn(5, 4))
        od.zero_grad(set_to_none=False)
        ld = bce(disc(torch.randn(5, 6)), torch.ones(5, 1)) + bce(disc(fake.detach()), torch.zeros(5, 1))
        ld.backward()
        assert not across(dbg), dbg.graph.notes
        clip_norm(disc)
        od.step()
        og.zero_grad(set_to_none=False)
        bce(disc(fake), torch.ones(5, 1)).backward()  # through D into G: adds to the .grad od.step() used
        og.step()
        assert not across(dbg), dbg.graph.notes
    dbg.close()


def test_a_clip_grad_value_that_clamps_is_not_told_apart() -> None:
    """Clamping some elements is no single rescale: the forgotten zero_grad() goes unsaid."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(5):
        model(x).pow(2).mean().backward()
        big = max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None)
        torch.nn.utils.clip_grad_value_(model.parameters(), big / 2)  # clamps the largest, not the rest
        opt.step()
        assert not across(dbg), dbg.graph.notes
    dbg.close()


def _trained(debug: bool) -> tuple[list[torch.Tensor], list[torch.Tensor], list[list[int]]]:
    """The parameters and ``.grad`` after a clipped loop that forgets zero_grad(), and how many times
    each ``.grad`` was written at each step (its ``_version`` after each step, less after the first
    backward: the engine copies a first gradient the debugger holds, rather than taking it)."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model) if debug else None
    writes: list[list[int]] = []
    first: list[int] = []
    for _ in range(4):
        model(x).pow(2).mean().backward()
        first = first or [p.grad._version for p in model.parameters() if p.grad is not None]
        clip_norm(model)
        opt.step()
        writes.append([p.grad._version - v for p, v in zip(model.parameters(), first, strict=True)])
    if dbg is not None:
        assert across(dbg)  # it told the rescaled sum
        dbg.close()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return [p.detach().clone() for p in model.parameters()], grads, writes


def test_telling_a_rescale_changes_no_parameter_gradient_or_version() -> None:
    params, grads, writes = _trained(debug=True)
    params_, grads_, writes_ = _trained(debug=False)
    assert all(torch.equal(a, b) for a, b in zip(params, params_, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_, strict=True))
    assert writes == writes_


@pytest.mark.parametrize(
    ("features", "bias"), [(1, False), (1, True), (4, False)], ids=["one element", "two of one", "one of twelve"]
)
def test_gradients_zeroed_and_written_anew_are_not_taken_for_a_rescale(features: int, bias: bool) -> None:
    """A backward whose gradient is thrown away (zero_grad(set_to_none=False) after it) before the
    step's own. One element alone is a multiple of any other: it tells nothing; two parameters of one
    element each differ in their ratios (one clip coefficient rescales both alike); one parameter's
    norm ratio is no ratio of its elements."""
    torch.manual_seed(0)
    model = nn.Linear(features, 3 if features > 1 else 1, bias=bias)
    nn.init.ones_(model.weight)  # gradients far above MAX_NORM
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(5):
        model(torch.randn(3, features)).pow(2).mean().backward()  # adds to the .grad the last step used
        assert not across(dbg), dbg.graph.notes  # (the step after that one is said by this one)
        opt.zero_grad(set_to_none=False)
        model(torch.randn(3, features)).pow(2).mean().backward()
        assert not across(dbg), dbg.graph.notes
        clip_norm(model)
        opt.step()
    dbg.close()
