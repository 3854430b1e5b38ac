"""What a runnable run puts back and records: flags a forward changes, inputs it edits in place,
generators held outside the model, the loss of a run without a graph, refused toggles, and names
of parameters and layers that changed since the debugger was made."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight._capture.guard import generators_reached
from gradsight.toggles import ToggleError


def leaf_names(graph: gs.Graph) -> set[str]:
    return {n.leaf.name for n in graph.leaves if n.leaf is not None and n.leaf.name}


def flags(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [p.requires_grad for p in model.parameters()], [m.training for m in model.modules()]


# -- requires_grad and training flags a forward changes ----------------------------------------------


class Freezing(nn.Module):
    """A warm-up freeze in the forward, and a head put in eval mode (or a forward that then raises)."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 3)
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.a.weight.requires_grad_(False)
        self.b.eval()
        if self.fail:
            raise ValueError("boom halfway")
        return self.b(self.a(x))


@pytest.mark.parametrize("fail", [False, True])
def test_flags_a_forward_changes_are_as_before_after_a_run(fail: bool) -> None:
    model, x = Freezing(fail), torch.randn(4, 6)
    before = flags(model)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    assert dbg.status == ("error" if fail else "ready")
    assert flags(model) == before
    if not fail:  # the run saw the flags the forward set
        assert leaf_names(dbg.graph) == {"a.bias", "b.weight", "b.bias"}
        dbg.rerun(requires_grad={"b.weight": False})
        assert flags(model) == before


def test_an_input_the_forward_makes_require_grad_is_as_before() -> None:
    class Saliency(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x.requires_grad_())

    x = torch.randn(3, 4)
    dbg = gs.debugger(Saliency(), inputs=x, loss=lambda out: out.sum())
    assert "input" in leaf_names(dbg.graph)  # the run saw it require grad
    assert not x.requires_grad and x.grad is None


def test_apply_keeps_the_toggles_flips_not_the_forwards() -> None:
    model = Freezing()
    dbg = gs.debugger(model, inputs=torch.randn(4, 6), loss=lambda out: out.pow(2).sum())
    dbg.rerun(requires_grad={"b.weight": False}, apply=True)
    assert not model.b.weight.requires_grad  # the toggle applied
    assert model.a.weight.requires_grad and model.b.training  # what the forward did, undone


def test_a_toggle_on_a_tensor_a_function_names_of_a_model_it_does_not_is_put_back() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    holder = {"net": [model]}  # deeper than gradsight looks: its modules are seen only when called
    w = model[0].weight
    dbg = gs.debugger(lambda: holder["net"][0](torch.ones(2, 4)).sum() + 0 * w.sum())
    assert "w" in leaf_names(dbg.graph)
    dbg.rerun(requires_grad={"w": False})
    assert w.requires_grad


# -- inputs a forward edits in place ---------------------------------------------------------------


class Halving(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x /= 2.0  # in-place normalisation of the batch
        return self.a(x)


def user_loss(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float(model(x.clone()).pow(2).sum())


def test_a_forward_that_edits_its_input_is_told_and_re_runs_do_not_compound_it() -> None:
    torch.manual_seed(0)
    model, x = Halving(), torch.ones(3, 4)
    expected_first = user_loss(model, x.clone())
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    assert dbg.graph.run.loss == pytest.approx(expected_first)
    assert torch.equal(x, torch.full((3, 4), 0.5))  # edited once, as by any forward of the user's
    (note,) = [n for n in dbg.graph.notes if "in place" in n]
    assert "input" in note and "stays edited" in note
    expected = user_loss(model, x)  # what a forward on the batch as it is now computes
    for _ in range(2):
        graph = dbg.rerun()
        assert torch.equal(x, torch.full((3, 4), 0.5))  # put back after each re-run
        assert graph.run.loss == pytest.approx(expected)
        assert any("re-runs do not compound" in n for n in graph.notes)


class EmaScale(nn.Module):
    """Scales by a running statistic it updates in place (and saves for the backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("ema", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        if self.training:
            with torch.no_grad():
                self.ema.mul_(0.9).add_(0.1 * h.abs().mean(0))
        return h * self.ema


def test_a_run_puts_back_the_version_counters_of_the_buffers_its_forward_updates() -> None:
    # a graph the user built before the debugger, which saved the buffers, still backwards
    torch.manual_seed(0)
    model, bn, x = EmaScale(), nn.BatchNorm1d(4), torch.randn(8, 4)
    pending = model(x).sum() + bn(x).pow(2).sum()  # saves ema; BatchNorm counts num_batches_tracked
    ema, versions = model.ema.clone(), (model.ema._version, bn.num_batches_tracked._version)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.sum())
    gs.debugger(bn, inputs=x, loss=lambda out: out.pow(2).sum())
    dbg.rerun(requires_grad={"lin.bias": False})
    assert torch.equal(model.ema, ema) and int(bn.num_batches_tracked) == 1
    assert (model.ema._version, bn.num_batches_tracked._version) == versions
    pending.backward()  # raised "modified by an inplace operation" while the counters stayed moved
    assert model.lin.weight.grad is not None


def test_a_rerun_puts_back_the_version_counter_of_an_input_it_restores() -> None:
    torch.manual_seed(0)
    model, x = Halving(), torch.ones(3, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    w = torch.ones(4, 4, requires_grad=True)
    pending = (x @ w).sum()  # saves x as the first run left it
    version = x._version
    dbg.rerun()  # the input seen edited is copied and put back
    assert torch.equal(x, torch.full((3, 4), 0.5)) and x._version == version
    pending.backward()
    assert w.grad is not None and float(w.grad.sum()) == pytest.approx(24.0)


def test_a_function_whose_forward_edits_a_tensor_it_reaches_names_it() -> None:
    model, batch = nn.Linear(4, 1), torch.ones(2, 4)

    def step() -> torch.Tensor:
        batch.mul_(3)
        return model(batch).sum()

    dbg = gs.debugger(step)
    assert any("in place: batch" in n for n in dbg.graph.notes)
    again = dbg.rerun()
    assert torch.equal(batch, torch.full((2, 4), 3.0))
    with torch.no_grad():
        assert again.run.loss == pytest.approx(float(model(batch * 3).sum()))


def test_inputs_the_forward_leaves_alone_get_no_note_inference_tensors_included() -> None:
    from gradsight._capture.guard import InputGuard

    model, x = nn.Linear(4, 1), torch.ones(2, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.sum())
    assert dbg.graph.nodes and not any("in place" in n for n in dbg.graph.notes + dbg.rerun().notes)
    with torch.inference_mode():
        frozen = torch.ones(2, 4)  # an inference tensor: no version counter to read
    with InputGuard([("frozen", frozen), ("x", x)], {}) as inputs, torch.inference_mode():
        frozen.mul_(2)
    assert inputs.changed == []


def test_a_function_that_reaches_an_inference_tensor_starts_and_re_runs() -> None:
    # Its version counter was read for the run's facts: "Inference tensors do not track version counter",
    # and the debugger failed to start.
    torch.manual_seed(0)
    model, x = nn.Linear(4, 3), torch.randn(6, 4)
    with torch.inference_mode():
        offset = torch.randn(6, 3)  # added, never saved for backward: autograd takes it
    dbg = gs.debugger(lambda: (model(x) + offset).pow(2).sum())
    assert dbg.status == "ready" and dbg.error == "" and "model.weight" in leaf_names(dbg.graph)
    graph = dbg.rerun(requires_grad={"model.bias": False})
    assert "model.bias" not in leaf_names(graph) and not graph.notes


# -- generators held outside the model ---------------------------------------------------------------

NOISE = torch.Generator().manual_seed(11)  # a module-level generator a model's forward draws from


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x + 0.1 * torch.randn(x.shape, generator=NOISE))


def test_generators_a_step_reaches_by_name_are_as_before_and_re_runs_see_the_same_noise() -> None:
    gen = torch.Generator().manual_seed(123)
    rng = np.random.default_rng(5)
    legacy = np.random.RandomState(3)
    model, x = nn.Linear(4, 1), torch.randn(6, 4)

    def step() -> torch.Tensor:
        noise = torch.randn(x.shape, generator=gen) * 0.1 + float(rng.normal())
        return model(x + noise).pow(2).sum()

    def loss(out: torch.Tensor) -> torch.Tensor:
        return out * float(1 + legacy.uniform())

    states = gen.get_state(), rng.bit_generator.state, legacy.get_state()[1].copy()
    dbg = gs.debugger(step, loss=loss)
    assert torch.equal(gen.get_state(), states[0]) and rng.bit_generator.state == states[1]
    assert np.array_equal(legacy.get_state()[1], states[2])
    assert dbg.rerun().run.loss == dbg.history[0]["loss"]  # the same noise: no change without a toggle

    noisy, before = Noisy(), NOISE.get_state()
    first = gs.debugger(noisy, inputs=x, loss=lambda out: out.sum())
    assert torch.equal(NOISE.get_state(), before)
    assert first.rerun().run.loss == first.history[0]["loss"]


class _RaisingClass:
    """A global whose ``__class__`` raises once armed (an app-context proxy): ``isinstance`` on it
    raises. Armed only in the test: pytest's collection reads the module's globals too."""

    armed = False

    @property
    def __class__(self) -> type:  # type: ignore[override]
        if _RaisingClass.armed:
            raise RuntimeError("no app context")
        return _RaisingClass


RAISING = _RaisingClass()


def test_generators_reached_past_a_global_that_raises_on_isinstance(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator()

    def step() -> torch.Tensor:
        assert RAISING is not None  # names the global
        return torch.randn(2, generator=gen)

    monkeypatch.setattr(_RaisingClass, "armed", True)
    assert generators_reached([step]) == [gen]


# -- the loss of a run without a graph ----------------------------------------------------------------


@pytest.mark.parametrize("toggles", [{"no_grad": True}, {"detach": ["2"]}, {"requires_grad": {"0": False, "2": False}}])
def test_a_rerun_without_a_graph_keeps_its_loss(toggles: dict[str, object]) -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), torch.randn(6, 4)
    expected = float(model(x).pow(2).sum().detach())
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    graph = dbg.rerun(**toggles)  # type: ignore[arg-type]
    assert not graph.nodes and graph.message
    assert graph.run.loss == pytest.approx(expected) and dbg.history[-1]["loss"] == graph.run.loss
    assert dbg.diff is not None and dbg.diff["loss"]["before"] == dbg.diff["loss"]["after"]


# -- toggles only a run can check ---------------------------------------------------------------------


def test_detaching_a_node_made_inside_another_call_is_refused_not_a_failed_run() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    dbg = gs.debugger(model, inputs=torch.randn(6, 4), loss=lambda out: out.pow(2).sum())
    shown, history = dbg.graph, list(dbg.history)
    with pytest.raises(ToggleError, match=r"cannot detach 2/TBackward0#0 alone.*detach=\['2'\]") as info:
        dbg.rerun(detach=["2/TBackward0#0"])
    assert isinstance(info.value, gs.RerunError) and "Traceback" not in str(info.value)
    assert dbg.status == "ready" and dbg.error == "" and dbg.graph is shown and dbg.history == history
    assert all(p.requires_grad for p in model.parameters())


# -- parameters and layers changed after the debugger was made ---------------------------------------


def test_a_parameter_replaced_after_the_debugger_was_made_is_named_and_toggled() -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)), torch.randn(6, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    old = model[0].weight
    model[0].weight = nn.Parameter(torch.randn(8, 4))
    graph = dbg.rerun(requires_grad={"0.weight": False})
    assert "0.weight" not in leaf_names(graph) and all(n.leaf is not None and n.leaf.name for n in graph.leaves)
    assert old.requires_grad and model[0].weight.requires_grad
    assert "toggle set it off" in dbg.why("0.weight").message
    graph = dbg.rerun()
    model(x).pow(2).sum().backward()
    (node,) = [n for n in graph.leaves if n.leaf is not None and n.leaf.name == "0.weight"]
    assert node.grad_norm == pytest.approx(float(model[0].weight.grad.norm()), rel=1e-6)  # type: ignore[union-attr]


def test_a_layer_appended_after_the_debugger_was_made_is_named_and_toggled() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    dbg = gs.debugger(model, inputs=torch.randn(6, 4), loss=lambda out: out.pow(2).sum())
    model.append(nn.Linear(1, 1))
    graph = dbg.rerun()
    assert {"3.weight", "3.bias"} <= leaf_names(graph) and "3" in graph.controls.modules
    graph = dbg.rerun(requires_grad={"3": False})
    assert not {"3.weight", "3.bias"} & leaf_names(graph) and model[3].weight.requires_grad


def test_a_function_whose_global_model_was_rebound_names_the_new_one() -> None:
    scope: dict[str, object] = {"net": nn.Linear(4, 1), "torch": torch}
    exec("def step():\n    return net(torch.ones(2, 4)).sum()", scope)
    dbg = gs.debugger(scope["step"])  # type: ignore[arg-type]
    scope["net"] = nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 1))
    assert {"net.0.weight", "net.1.weight"} <= leaf_names(dbg.rerun())


def test_a_lazy_layer_appended_since_is_refused_and_left_uninitialized() -> None:
    model = nn.Sequential(nn.Linear(4, 8))
    dbg = gs.debugger(model, inputs=torch.randn(6, 4), loss=lambda out: out.sum())
    model.append(nn.LazyLinear(1))
    with pytest.raises(gs.RerunError, match="lazy modules"):
        dbg.rerun()
    assert dbg.status == "ready" and model[1].has_uninitialized_params()  # type: ignore[operator]
