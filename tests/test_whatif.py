"""What-if debugging: toggles, re-runs, diffs, history, and why a .grad is None (or zero)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight.graph import Why as Explanation
from tests.run_zoo import MLP, make
from tests.zoo import TinyModel


def leaf_names(graph: gs.Graph) -> list[str]:
    return sorted(n.leaf.name for n in graph.leaves if n.leaf and n.leaf.name)


def tiny() -> tuple[TinyModel, gs.Debugger]:
    torch.manual_seed(0)
    model = TinyModel()
    batch, target = torch.randn(4, 1000), torch.randn(4, 10)
    return model, gs.debugger(model, inputs=batch, loss=lambda out: (target - out).pow(2).sum())


# -- the seed notebook's lessons -------------------------------------------------------------------


def test_seed_a_times_b_requires_grad_lessons() -> None:
    a = torch.ones(2, 3, requires_grad=True)
    b = torch.ones(2, 3, requires_grad=True)
    dbg = gs.debugger(lambda: (a * b).sum())
    assert [n.name for n in dbg.graph.nodes] == ["SumBackward0", "MulBackward0", "AccumulateGrad", "AccumulateGrad"]
    assert leaf_names(dbg.graph) == ["a", "b"]
    one = dbg.rerun(requires_grad={"a": False})
    assert leaf_names(one) == ["b"]
    none = dbg.rerun(requires_grad={"a": False, "b": False})
    assert len(none) == 0 and none.message is not None and "requires_grad=False" in none.message
    assert a.requires_grad and b.requires_grad  # the user's tensors are as before
    nograd = dbg.rerun(no_grad=True)
    assert len(nograd) == 0 and nograd.message is not None and "no_grad" in nograd.message


def test_seed_tiny_model_with_layer1_frozen() -> None:
    model, dbg = tiny()
    graph = dbg.rerun(requires_grad={"layer1": False})
    assert leaf_names(graph) == ["layer2.bias", "layer2.weight"]
    assert set(gs.diff.diff(dbg._runs.get(0).graph, graph).lost_grad) == {"layer1.weight", "layer1.bias"}
    assert dbg.diff is not None and set(dbg.diff["lost_grad"]) == {"layer1.weight", "layer1.bias"}
    assert all(p.requires_grad for p in model.parameters())  # restored
    missing = {w.name: w for w in graph.missing}
    assert missing["layer1.weight"].reason == "requires_grad_false"


def test_detach_cuts_the_path() -> None:
    _model, dbg = tiny()
    graph = dbg.rerun(detach=["layer1"])
    assert leaf_names(graph) == ["layer2.bias", "layer2.weight"]
    why = dbg.why("layer1.weight")
    assert why.reason == "detach" and "detach" in why.message


# -- every toggle kind -------------------------------------------------------------------------------


def test_requires_grad_of_one_parameter() -> None:
    model, dbg = tiny()
    graph = dbg.rerun(requires_grad={"layer1.weight": False})
    assert "layer1.weight" not in leaf_names(graph) and "layer1.bias" in leaf_names(graph)
    assert model.layer1.weight.requires_grad


def test_apply_keeps_the_requires_grad_change() -> None:
    model, dbg = tiny()
    dbg.rerun(requires_grad={"layer1.weight": False}, apply=True)
    assert not model.layer1.weight.requires_grad
    assert next(c for c in dbg.graph.controls.leaves if c.name == "layer1.weight").requires_grad is False


def test_no_grad_on_one_module() -> None:
    _model, dbg = tiny()
    graph = dbg.rerun(no_grad=["layer1"])
    assert leaf_names(graph) == ["layer2.bias", "layer2.weight"]
    assert torch.is_grad_enabled()
    why = dbg.why("layer1.weight")  # the re-run's own toggle, named, not a line of the user's code to move
    assert why.reason == "no_grad" and "no_grad toggle runs module layer1" in why.message
    assert {w.name: w.reason for w in graph.missing}["layer1.weight"] == "no_grad"  # known without a trace


def test_inference_mode_on_the_whole_step() -> None:
    _, dbg = tiny()
    graph = dbg.rerun(inference_mode=True)
    assert len(graph) == 0 and graph.message is not None and "inference_mode" in graph.message
    assert not torch.is_inference_mode_enabled()


def test_inference_mode_on_one_module() -> None:
    _, dbg = tiny()
    graph = dbg.rerun(inference_mode=["layer1"])
    assert leaf_names(graph) == ["layer2.bias", "layer2.weight"]
    assert not torch.is_inference_mode_enabled()
    why = dbg.why("layer1.weight")
    assert why.reason == "inference_mode"


def test_an_error_in_the_users_code_keeps_the_graph_and_the_debugger_working() -> None:
    model, dbg = tiny()
    before = dbg.graph
    model.layer2 = nn.Linear(7, 10)  # the user breaks the model: shapes no longer fit
    with pytest.raises(gs.RerunError, match="shapes cannot be multiplied"):
        dbg.rerun()
    assert dbg.status == "error" and "Traceback" in dbg.error
    assert dbg.graph is before  # the previous graph stays
    model.layer2 = nn.Linear(100, 10)
    graph = dbg.rerun()
    assert dbg.status == "ready" and len(graph) > 0


def test_bad_toggles_are_explained() -> None:
    _, dbg = tiny()
    with pytest.raises(gs.ToggleError, match="no leaf or module named 'layer9'"):
        dbg.rerun(requires_grad={"layer9": False})
    with pytest.raises(gs.ToggleError, match="no_grad"):
        dbg.rerun(no_grad=["nowhere"])


def test_reruns_replay_the_rng() -> None:
    case = make("conv_bn")  # has dropout
    dbg = gs.debugger(case.model, inputs=case.inputs, loss=case.loss)
    first = dbg.graph.run.loss
    torch.randn(100)  # the user consumes random numbers in between
    again = dbg.rerun()
    assert again.run.loss == first
    assert dbg.diff is not None and dbg.diff["loss"] == {"before": first, "after": first}


def test_loss_that_raises_on_rerun() -> None:
    model = MLP()
    x = torch.randn(2, 8)
    state = {"fail": False}

    def loss(out: torch.Tensor) -> torch.Tensor:
        if state["fail"]:
            raise ZeroDivisionError("boom in loss")
        return out.sum()

    dbg = gs.debugger(model, inputs=x, loss=loss)
    state["fail"] = True
    with pytest.raises(gs.RerunError, match="boom in loss"):
        dbg.rerun()
    assert dbg.status == "error" and "ZeroDivisionError" in dbg.error
    assert len(dbg.graph) > 0 and dbg.graph.run.index == 0


def test_tensor_debugger_cannot_rerun_and_says_how() -> None:
    x = torch.ones(3, requires_grad=True)
    dbg = gs.debugger((x * 2).sum())
    assert dbg.graph.controls.rerun is False and "gradsight.debugger(model" in (dbg.graph.controls.note or "")
    with pytest.raises(gs.RerunError, match="cannot re-run"):
        dbg.rerun()


# -- history, diff, and the view's requests --------------------------------------------------------


def test_history_switching_and_comparing() -> None:
    _, dbg = tiny()
    dbg.rerun(requires_grad={"layer1": False})
    dbg.rerun(no_grad=["layer2"])
    assert [h["index"] for h in dbg.history] == [0, 1, 2]
    assert dbg.current == 2 and dbg.baseline == 1
    dbg.set_state({"current": 0})  # the view picks the first run
    assert dbg.graph.run.index == 0 and "leaf:layer1.weight" in dbg.graph
    dbg.set_state({"baseline": 1})
    assert dbg.diff is not None and dbg.diff["after"] == 0 and "layer1.weight" in dbg.diff["gained_grad"]
    dbg.set_state({"current": 99})
    assert dbg.graph.run.index == 0 and "no run 99" in dbg.error


def test_history_is_bounded() -> None:
    _, dbg = tiny()
    for _ in range(12):
        dbg.rerun()
    assert len(dbg.history) == gs.runs.MAX_RUNS and dbg.history[-1]["index"] == 12


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, content: dict[str, Any], buffers: Any = None) -> None:
        self.messages.append(content)


def test_rerun_request_applies_pending_toggles(monkeypatch: pytest.MonkeyPatch) -> None:
    _model, dbg = tiny()
    sent = Sent()
    monkeypatch.setattr(dbg, "send", sent)
    dbg.set_state({"pending": {**gs.widget.NO_PENDING, "requires_grad": {"layer1.weight": False}}})
    assert dbg.error == ""
    dbg._on_msg(dbg, {"type": "rerun", "request_id": "r", "after_run": 0}, [])
    assert sent.messages[-1] == {"type": "rerun", "request_id": "r", "ok": True, "run": 1}
    assert "leaf:layer1.weight" not in dbg.graph
    assert dbg.pending["requires_grad"] == {"layer1.weight": False}  # the panel shows the run's toggles
    dbg._on_msg(dbg, {"type": "rerun", "request_id": "r2", "after_run": 0}, [])  # a stale second click
    assert sent.messages[-1]["ok"] is False and "already ran" in sent.messages[-1]["error"]
    assert dbg.graph.run.index == 1


def test_bad_pending_toggles_are_reverted() -> None:
    _, dbg = tiny()
    dbg.set_state({"pending": {**gs.widget.NO_PENDING, "requires_grad": {"layer9.weight": False}}})
    assert dbg.pending == gs.widget.NO_PENDING and "layer9.weight" in dbg.error


def test_why_request(monkeypatch: pytest.MonkeyPatch) -> None:
    _, dbg = tiny()
    dbg.rerun(requires_grad={"layer1": False})
    sent = Sent()
    monkeypatch.setattr(dbg, "send", sent)
    dbg._on_msg(dbg, {"type": "why", "request_id": "w", "leaf": "layer1.bias"}, [])
    assert sent.messages[-1]["ok"] and sent.messages[-1]["why"]["reason"] == "requires_grad_false"
    dbg._on_msg(dbg, {"type": "why", "request_id": "w", "leaf": "nope"}, [])
    assert sent.messages[-1]["ok"] is False


# -- why is .grad None (or zero)? -----------------------------------------------------------------


class Why(nn.Module):
    """A model whose `mode` decides how `self.side`'s path to the loss breaks."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.main = nn.Linear(4, 4)
        self.side = nn.Linear(4, 4)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.main(x)
        if self.mode == "unused":
            return y
        s = self.side(x)
        if self.mode == "detach":
            s = s.detach()
        elif self.mode == "data":
            s = s.data
        elif self.mode == "argmax":
            s = s.argmax(dim=1, keepdim=True).float()
        elif self.mode == "no_grad":
            with torch.no_grad():
                s = s * 2
        elif self.mode == "not_on_path":
            self.last_side = s  # computed, but the loss never sees it
            return y
        return y + s


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("detach", "detach"),
        ("data", "data"),
        ("argmax", "non_differentiable"),
        ("no_grad", "no_grad"),
        ("not_on_path", "not_on_path"),
        ("unused", "unused"),
    ],
)
def test_why_none_traces_where_the_path_breaks(mode: str, reason: str) -> None:
    model = Why(mode)
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda out: out.pow(2).sum())
    assert "side.weight" not in leaf_names(dbg.graph)
    assert any(w.name == "side.weight" for w in dbg.graph.missing)
    why = dbg.why("side.weight")
    assert why.reason == reason, why
    if reason in ("detach", "data", "non_differentiable", "no_grad"):
        assert why.source is not None and "test_whatif.py" in why.source


def test_why_names_the_break_on_the_path_to_the_loss_not_a_value_logged_under_no_grad() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3, requires_grad=True)
    log: list[torch.Tensor] = []

    def step() -> torch.Tensor:
        with torch.no_grad():
            log.append(w.norm())  # logging: loses requires_grad, but never reaches the loss
        h = w.detach() * x  # the break on the path
        return h.sum()

    why = gs.debugger(step).why("w")
    assert why.reason == "detach" and why.source is not None and "h = w.detach() * x" in why.source


def test_why_a_leaf_only_logged_under_no_grad_is_not_on_the_path() -> None:
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3, requires_grad=True)
    stats: dict[str, torch.Tensor] = {}

    def step() -> torch.Tensor:
        with torch.no_grad():
            stats["w_norm"] = w.norm()
        return (x * 2).sum()

    why = gs.debugger(step).why("w")
    assert why.reason == "not_on_path" and why.source is None and "no_grad" not in why.message


def test_why_follows_a_value_written_into_another_tensor() -> None:
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3, requires_grad=True)

    def step() -> torch.Tensor:
        buf = torch.zeros(3)
        buf[:] = w.detach()  # what is written flows into buf, which reaches the loss
        return (buf * x).sum()

    why = gs.debugger(step).why("w")
    assert why.reason == "detach" and why.source is not None and "buf[:] = w.detach()" in why.source


def test_why_under_a_module_toggle_blames_the_toggle_not_the_line_that_asked() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    x = torch.randn(5, 4, requires_grad=True)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.sum())
    graph = dbg.rerun(no_grad=["0"])

    def ask(name: str) -> Explanation:
        return dbg.why(name)  # not where any path breaks

    weight = ask("0.weight")  # its own module is toggled: known without a trace
    assert weight.reason == "no_grad" and "no_grad toggle runs module 0" in weight.message
    assert weight.source is None and "Move that code" not in weight.message
    assert {w.name: w.reason for w in graph.missing}["0.weight"] == "no_grad"
    upstream = ask("input")  # used before the toggled module: the trace finds the toggle
    assert upstream.reason == "no_grad" and "toggle" in upstream.message and "Move that code" not in upstream.message
    assert upstream.source is None  # nn.Sequential runs it all inside torch: no line of the user's


def test_why_requires_grad_false_without_a_rerun() -> None:
    model = MLP()
    model.layer1.weight.requires_grad_(False)
    dbg = gs.debugger(model, inputs=torch.randn(2, 8), loss=lambda out: out.sum())
    why = dbg.why("layer1.weight")
    assert why.reason == "requires_grad_false"


def test_why_zero_points_at_a_dead_relu() -> None:
    model = MLP()
    with torch.no_grad():
        model.layer1.bias.fill_(-100.0)  # every pre-activation negative: ReLU is dead
    dbg = gs.debugger(model, inputs=torch.randn(3, 8), loss=lambda out: out.pow(2).sum())
    leaf = dbg.graph.node("leaf:layer1.weight")
    assert leaf.grad_norm == 0.0
    why = dbg.why("layer1.weight")
    assert why.reason == "zero" and "ReLU" in why.message
    assert why.where is not None and dbg.graph.node(why.where).name == "ReluBackward0"
    insp = dbg.inspect("leaf:layer1.weight")
    assert insp.why is not None and insp.why.reason == "zero"
    # the view's list of missing gradients explains every zero leaf at once, the same way
    missing = {w.name: w for w in dbg.graph.missing}
    assert {"layer1.weight", "layer1.bias"} <= set(missing)
    assert all(missing[n].reason == "zero" and missing[n].where == why.where for n in ("layer1.weight", "layer1.bias"))


def test_why_zero_points_at_a_zero_mask() -> None:
    w = torch.randn(3, requires_grad=True)
    mask = torch.zeros(3)
    dbg = gs.debugger(lambda: (w.exp() * mask).sum())
    why = dbg.why("w")
    assert why.reason == "zero" and why.where is not None
    assert dbg.graph.node(why.where).name == "MulBackward0" and "mask" in why.message


def test_why_nan_points_at_the_op_whose_backward_made_it() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 3)
    x = torch.randn(2, 3)

    def loss() -> torch.Tensor:
        y = layer(x)
        return (y - y.detach()).sqrt().sum()  # sqrt(0) = 0 forward; its derivative at 0 is infinite

    dbg = gs.debugger(loss)
    sqrt = dbg.graph.find("SqrtBackward0")[0]
    assert sqrt.grad_norm is not None and math.isfinite(sqrt.grad_norm)
    for name in ("layer.weight", "layer.bias"):
        (received,) = dbg.graph.node(f"leaf:{name}").grad_in
        assert received is not None and (received.nan_count or 0) + (received.inf_count or 0) > 0
        why = dbg.why(name)
        assert why.reason == "nonfinite" and why.where == sqrt.id and "sqrt" in why.message
    missing = {w.name: w for w in dbg.graph.missing}
    assert missing["layer.weight"].reason == "nonfinite" and missing["layer.weight"].where == sqrt.id
    assert dbg.inspect("leaf:layer.weight").why is not None


def test_why_reentrant_checkpoint_without_an_input_that_requires_grad() -> None:
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            self.head = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(checkpoint(self.block, x, use_reentrant=True))  # PyTorch's classic pitfall

    with pytest.warns(UserWarning, match="requires_grad"):  # torch's own warning
        dbg = gs.debugger(Checkpointed(), inputs=torch.randn(3, 4), loss=lambda out: out.sum())
    assert "leaf:block.0.weight" not in dbg.graph
    with pytest.warns(UserWarning, match="requires_grad"):  # again: the trace re-runs the forward
        why = dbg.why("block.0.weight")
    assert why.reason == "no_grad" and "use_reentrant=False" in why.message and "checkpoint" in why.message


def test_why_backward_excluded_it() -> None:
    model = MLP()
    gs.options.live_interval, old = 0.0, gs.options.live_interval
    gs.options.live_share, old_share = 1.0, gs.options.live_share
    try:
        dbg = gs.debugger(model)
        loss = model(torch.randn(2, 8)).sum()
        loss.backward(inputs=[model.layer2.weight])
        why = dbg.why("layer1.weight")
        assert why.reason == "not_on_path" and why.where == "leaf:layer1.weight"
        dbg.close()
    finally:
        gs.options.live_interval, gs.options.live_share = old, old_share


def test_why_graph_freed_by_an_earlier_backward() -> None:
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    loss = (a.exp() * b).sum()
    loss.backward(inputs=[b])  # frees the graph; a got nothing
    dbg = gs.debugger(loss, params={"a": a, "b": b})
    why = dbg.why("a")
    assert why.reason == "freed" and "second time" in why.message


def test_detach_at_a_chosen_node_cuts_the_edges_into_it() -> None:
    model = MLP()
    x = torch.randn(3, 8)
    dbg = gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())
    assert dbg.graph.controls.detach_nodes
    graph = dbg.rerun(detach=["ReluBackward0#0"])
    assert "ReluBackward0#0" not in graph and "leaf:layer1.weight" not in graph
    assert leaf_names(graph) == ["layer2.bias", "layer2.weight"]
    expected = torch.autograd.grad(model.layer2(torch.relu(model.layer1(x)).detach()).pow(2).sum(),
                                   model.layer2.weight)[0]  # fmt: skip
    assert graph.node("leaf:layer2.weight").grad_norm == pytest.approx(float(expected.norm()), rel=1e-6)


def test_detach_of_a_node_made_inside_a_call_is_explained() -> None:
    model = MLP()
    dbg = gs.debugger(model, inputs=torch.randn(3, 8), loss=lambda out: out.pow(2).sum())
    with pytest.raises(gs.RerunError, match="inside another call"):
        dbg.rerun(detach=["layer1/TBackward0#0"])
    assert dbg.graph.run.index == 0


def test_a_keyboard_interrupt_during_a_rerun_restores_grad_mode_and_status() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    armed = [False]

    def interrupt(*_: Any) -> None:
        if armed[0]:
            raise KeyboardInterrupt

    model[0].register_forward_hook(interrupt)
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    armed[0] = True
    with pytest.raises(KeyboardInterrupt):
        dbg.rerun(no_grad=["0"])  # the module's no_grad is left by an always_call hook it skips
    assert torch.is_grad_enabled() and dbg.status == "error" and "KeyboardInterrupt" in dbg.error
    armed[0] = False
    dbg.rerun()
    assert dbg.status == "ready"


def test_a_rerun_whose_module_toggles_cut_the_graph_names_them() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    dbg = gs.debugger(model, inputs=torch.randn(8, 4), loss=lambda o: o.pow(2).sum())
    graph = dbg.rerun(no_grad=["0", "1"])
    assert len(graph) == 0 and graph.message is not None
    assert "this re-run's toggles" in graph.message and "no_grad(0, 1)" in graph.message
    dbg.close()
