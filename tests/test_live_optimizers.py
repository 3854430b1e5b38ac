"""Live mode: the note naming parameters that get a gradient but are in no optimizer. Named only when
their values stayed the same through 2+ steps of the optimizers training the rest of the model: not a
parameter updated by hand through ``.data`` (no ``_version`` bump), not the model's parameters while
its optimizer accumulates gradients beside another model's optimizer that steps every batch; a
parameter truly left out is named once that many steps went by."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs

NOTE = "but no optimizer stepped"


pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def encoder_and_head(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("enc", nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8)))
    model.add_module("head", nn.Linear(8, 1))
    return model


def named(dbg: gs.Debugger) -> list[str]:
    return [n for n in dbg.graph.notes if NOTE in n]


def test_a_head_updated_by_hand_through_data_is_not_named() -> None:
    model, x = encoder_and_head(), torch.randn(16, 4)
    opt = torch.optim.SGD(model.enc.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for _ in range(5):
        opt.zero_grad()
        model.head.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        version = model.head.weight._version
        for p in model.head.parameters():
            p.data -= 0.1 * p.grad  # type: ignore[operator]  # (fp32 master weights copied back do the same)
        assert model.head.weight._version == version  # (what makes it hard: .data bumps no version)
        assert not named(dbg), dbg.graph.notes
    assert dbg.graph.run.step == 5
    dbg.close()


def test_gradient_accumulation_beside_another_models_optimizer_is_no_false_note() -> None:
    model, other, x = encoder_and_head(0), encoder_and_head(1), torch.randn(16, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)  # every parameter of the model: none left out
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    for i in range(6):
        (model(x).pow(2).mean() / 2).backward()  # opt steps every 2 backward calls
        assert not named(dbg), (i, dbg.graph.notes)
        if i % 2:
            opt.step()
            opt.zero_grad()
        other_opt.zero_grad()
        other(x).pow(2).mean().backward()  # another model's optimizer steps every batch
        other_opt.step()
    assert dbg.graph.run.step == 6
    dbg.close()


def test_a_head_in_no_optimizer_is_named_once_the_others_stepped_twice_since() -> None:
    """The encoder's optimizer accumulates over 2 backward calls: the head (in no optimizer, unchanged)
    is named only after 2 of its steps, then at every step."""
    model, x = encoder_and_head(), torch.randn(16, 4)
    opt = torch.optim.SGD(model.enc.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    head = model.head.weight.detach().clone()
    shown: list[bool] = []
    for i in range(8):
        model(x).pow(2).mean().backward()
        notes = named(dbg)
        shown.append(bool(notes))
        if notes:
            assert "head.weight" in notes[0] and "head.bias" in notes[0] and "enc." not in notes[0]
        if i % 2:
            opt.step()
            opt.zero_grad()
    # steps 1-4 come before the encoder's optimizer stepped twice after step 1 (it steps after 2 and 4)
    assert shown == [False] * 4 + [True] * 4
    assert torch.equal(model.head.weight, head)  # (what the note says: it never trains)
    dbg.close()


def test_an_optimizer_that_has_not_stepped_yet_is_no_claim_that_its_parameters_are_in_none() -> None:
    """The encoder's optimizer steps every 4th batch (a GradScaler skipping its steps looks the same):
    its parameters are in an optimizer that calls no hook until it steps. The note says what is known
    (no optimizer stepped them) and both causes, not that they are in no optimizer."""
    model, x = encoder_and_head(), torch.randn(16, 4)
    enc_opt = torch.optim.SGD(model.enc.parameters(), lr=0.1)
    head_opt = torch.optim.SGD(model.head.parameters(), lr=0.1)
    dbg = gs.debugger(model)
    said: list[str] = []
    for i in range(4):
        model(x).pow(2).mean().backward()
        said += named(dbg)
        head_opt.step()
        head_opt.zero_grad()
        if i % 4 == 3:
            enc_opt.step()
            enc_opt.zero_grad()
    assert said  # (steps 3 and 4: the head's optimizer stepped twice since, the encoder's not yet)
    for note in said:
        assert "enc.0.weight" in note and "head." not in note
        assert "in no optimizer" not in note and "they are in no" not in note
        assert "steps less often" in note and "GradScaler" in note and "pass them to the optimizer" in note
    model(x).pow(2).mean().backward()  # the encoder's optimizer stepped: it is seen now
    assert not named(dbg)
    dbg.close()
