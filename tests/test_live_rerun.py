"""Live mode with checkpointed models, re-runs after the usual optimizer step or a refilled batch
buffer, and re-runs of a step that ran under autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradsight as gs

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def test_a_checkpointed_models_recompute_in_backward_is_no_step() -> None:
    # checkpoint(model, x): the model runs again inside backward. Counted as a step, the second user
    # step showed as step 3, and a capture began inside the backward.
    model, x = _model(), torch.randn(3, 4, requires_grad=True)
    dbg = gs.debugger(model)
    assert dbg._live is not None
    for _ in range(2):
        checkpoint(model, x, use_reentrant=False).pow(2).sum().backward()
    assert dbg.graph.run.step == 2 and dbg._live.steps == 2
    assert dbg.graph.node("leaf:0.weight").module == "0" and dbg.error == ""
    assert [h.step for h in dbg.inspect("leaf:0.weight").history] == [1, 2]
    dbg.close()


def test_a_reentrant_checkpoint_of_the_whole_model_says_why_no_step_shows() -> None:
    model, x = _model(), torch.randn(3, 4, requires_grad=True)
    dbg = gs.debugger(model)
    assert dbg._live is not None
    for _ in range(2):  # the forward under no_grad; its graph only exists inside backward
        checkpoint(model, x, use_reentrant=True).pow(2).sum().backward()
    assert dbg.graph.run.step == 0 and dbg._live.steps == 0
    assert "use_reentrant=False" in dbg.error
    dbg.close()


class Region(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(checkpoint(self.a, x, use_reentrant=True))


def test_parameters_inside_a_reentrant_checkpoint_region_are_not_missing() -> None:
    torch.manual_seed(0)
    model, x = Region(), torch.randn(3, 4, requires_grad=True)
    dbg = gs.debugger(model)
    model(x).pow(2).sum().backward()
    assert model.a.weight.grad is not None
    assert "a.weight" not in {w.name for w in dbg.graph.missing}
    why = dbg.why("a.weight").message
    assert f"got a gradient (norm {model.a.weight.grad.norm().item():.4g}) inside a reentrant checkpoint" in why
    graph = dbg.rerun()  # a re-run's own backward: the same
    assert "a.weight" not in {w.name for w in graph.missing} and "inside a reentrant" in dbg.why("a.weight").message
    dbg.close()


def test_a_live_rerun_after_the_optimizer_step_says_so_and_compares_like_with_like() -> None:
    model, x = _model(), torch.randn(16, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    dbg = gs.debugger(model)
    model(x).pow(2).sum().backward()
    opt.step()
    opt.zero_grad()
    graph = dbg.rerun()  # the same toggles as the step: the diff is the optimizer step's, and says so
    notes = " ".join(graph.notes)  # (what a live re-run computes may be a note of its own: live_notes.rerun_note)
    assert "parameters changed since step 1" in notes
    assert "before the optimizer step" in notes or "before optimizer.step()" in notes
    dbg.current = 0  # back to the step, then a what-if: the step is made again on the parameters now first
    graph = dbg.rerun(requires_grad={"2.bias": False})
    assert [h["label"] for h in dbg.history] == ["step 1", "no toggles", "step 1 again, parameters now",
                                                "2.bias.requires_grad=False"]  # fmt: skip
    assert dbg.baseline == 2 and dbg.current == 3 and any("(run 2)" in n for n in graph.notes)
    assert dbg.diff is not None
    before, after = dbg._runs.get(1), dbg._runs.get(2)
    assert before is not None and after is not None
    # the step made again is the plain re-run on the same parameters: same gradients
    assert after.graph.node("leaf:0.weight").grad_norm == before.graph.node("leaf:0.weight").grad_norm
    norms = {row["name"]: (row["before"], row["after"]) for row in dbg.diff["grad_norms"]}
    assert norms["0.weight"][0] == norms["0.weight"][1] and norms["2.bias"][1] is None  # the toggle alone
    dbg.close()


def test_a_live_rerun_after_the_batch_buffer_was_refilled_says_so() -> None:
    model, buffer = _model(), torch.randn(16, 4)
    dbg = gs.debugger(model)
    model(buffer).pow(2).sum().backward()
    buffer.copy_(torch.randn(16, 4))  # the next batch, into the same tensor
    graph = dbg.rerun()
    assert any(
        "step 1's inputs were written in place" in n.lower() and "new tensor per batch" in n for n in graph.notes
    )
    dbg.close()


def test_a_live_rerun_replays_the_steps_autocast() -> None:
    model, x = _model(), torch.randn(16, 4)
    dbg = gs.debugger(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().pow(2).sum().backward()
    step = dbg.graph
    assert step.find("ToCopyBackward0")
    graph = dbg.rerun()  # outside the autocast region, as the view's Re-run is
    assert [n.id for n in graph.nodes] == [n.id for n in step.nodes]
    assert graph.node("leaf:0.weight").grad_norm == step.node("leaf:0.weight").grad_norm
    assert torch.is_autocast_enabled("cpu") is False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().pow(2).sum().backward()  # step 2 under autocast; then one without, re-run inside it
    model(x).pow(2).sum().backward()
    plain = dbg.graph
    with torch.autocast("cpu", dtype=torch.bfloat16):
        graph = dbg.rerun()
    assert not graph.find("ToCopyBackward0") and [n.id for n in graph.nodes] == [n.id for n in plain.nodes]
    dbg.close()


class Shifted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return self.lin(x) + shift


def test_a_step_whose_inputs_include_an_inference_tensor_is_recorded_and_re_runs() -> None:
    # Its version counter was read for what the step ran on: the step was not recorded.
    torch.manual_seed(0)
    model, x = Shifted(), torch.randn(6, 4)
    with torch.inference_mode():
        shift = torch.randn(6, 3)
    dbg = gs.debugger(model)
    model(x, shift).pow(2).sum().backward()
    assert dbg.graph.run.step == 1 and dbg.error == ""
    graph = dbg.rerun(requires_grad={"lin.bias": False})
    assert "lin.bias" in [w.name for w in graph.missing]
    assert not [n for n in graph.notes if not n.startswith("A live re-run replays")]  # (live_notes.rerun_note)
    dbg.close()


NOISE = torch.Generator().manual_seed(7)  # a module-level generator the model's forward draws from


class Editing(nn.Module):
    """Halves its input in place and adds noise from a generator outside the model."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x /= 2
        return self.lin(x + 0.1 * torch.randn(x.shape, generator=NOISE))


def test_a_live_rerun_tells_an_input_edit_and_puts_back_the_batch_and_outside_generators() -> None:
    # The live re-run's spec had no inputs and no generators: the edit compounded silently at each
    # re-run, and each re-run drew new noise from NOISE and left it advanced.
    torch.manual_seed(0)
    model, x = Editing(), torch.ones(3, 4)
    dbg = gs.debugger(model)
    model(x).pow(2).sum().backward()  # the user's step: x is halved once
    assert dbg.graph.run.step == 1 and torch.equal(x, torch.full((3, 4), 0.5))
    state = NOISE.get_state()
    first = dbg.rerun()
    assert torch.equal(NOISE.get_state(), state)
    (note,) = [n for n in first.notes if "in place" in n]
    assert "this input in place: input." in note and "run another step on a fresh batch" in note
    assert torch.equal(x, torch.full((3, 4), 0.5))  # the step's own edit was seen: put back after each re-run
    for _ in range(2):
        graph = dbg.rerun(requires_grad={"lin.bias": False})
        assert torch.equal(x, torch.full((3, 4), 0.5)) and torch.equal(NOISE.get_state(), state)
        assert any("re-runs do not compound" in n for n in graph.notes)
    assert dbg._runs.get(2).graph.run.loss == dbg._runs.get(3).graph.run.loss  # type: ignore[union-attr]
    dbg.close()


class _Renormed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.fc = nn.Embedding(10, 4, max_norm=1.0), nn.Linear(4, 1)

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        return self.fc(self.emb(i)).sum()


def test_a_renormalized_embedding_is_no_parameter_change_between_live_reruns() -> None:
    # nn.Embedding(max_norm=...) renormalizes its weight in every forward (gradsight's re-runs too, which
    # put it back): its version moves with no optimizer step, and a second what-if from the step made
    # the step "again, parameters now" with a note blaming an optimizer step that never happened.
    torch.manual_seed(0)
    model = _Renormed()
    with torch.no_grad():
        model.emb.weight.mul_(5)  # rows past max_norm: every forward renormalizes them
    dbg = gs.debugger(model)
    model(torch.randint(0, 10, (6,))).backward()
    step = dbg.current
    dbg.rerun(requires_grad={"fc.bias": False})
    dbg.current = step
    graph = dbg.rerun(requires_grad={"fc.weight": False})
    assert [r["label"] for r in dbg.history] == [
        "step 1",
        "fc.bias.requires_grad=False",
        "fc.weight.requires_grad=False",
    ]
    assert not any("changed" in note for note in graph.notes)
    dbg.close()


def test_a_live_leafs_finite_exploding_gradient_has_its_norm_not_inf() -> None:
    # Every .grad is finite (~6.7e21), but a float32 norm of its squares overflows: the leaves showed
    # inf, and why() said the gradient became non-finite in the TBackward0 that passed it on.
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2)), torch.randn(4, 8)
    dbg = gs.debugger(model)
    (model(x) * 1e21).sum().backward()
    for name, p in model.named_parameters():
        node = dbg.graph.node(f"leaf:{name}")
        assert node.grad_norm == pytest.approx(float(p.grad.double().norm()), rel=1e-4), name
        assert not node.nonfinite_gradient
        assert "non-finite" not in dbg.why(name).message and "NaN or Inf" not in dbg.why(name).message
    dbg.close()


def test_a_rerun_of_a_head_whose_input_came_out_of_the_freed_backbone_graph_starts_at_the_input() -> None:
    """gs.debugger(model.head) while the whole model trains (or a GAN's D on G's fake batch): the
    step's backward freed the graph its input came out of; a re-run starts the graph at the input."""
    from gradsight._capture.targets import CUT_INPUTS

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    dbg = gs.debugger(model[2])
    nn.functional.mse_loss(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    graph = dbg.rerun()  # raised torch's "backward through the graph a second time"
    assert CUT_INPUTS in graph.notes
    leaves = {n.leaf.name: n for n in graph.leaves}
    assert set(leaves) == {"weight", "bias", "input"}
    assert leaves["weight"].grad_in[0].norm == pytest.approx(float(model[2].weight.grad.norm()), rel=1e-5)
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())  # .grad untouched
    toggled = dbg.rerun(requires_grad={"weight": False})
    assert "weight" not in {n.leaf.name for n in toggled.leaves}
    dbg.close()
