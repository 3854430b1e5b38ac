"""Live mode: a step whose forward is differentiated more than once (a gradient penalty, several
losses with ``retain_graph=True``) is one step — every pass of it counts, and it is shown once."""

from __future__ import annotations

import copy
import threading

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight._capture import live_step
from tests.run_zoo import MLP

WAIT = 10  # seconds: only reached when a test fails


pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


def grad_norm(p: torch.Tensor) -> float:
    assert p.grad is not None
    return float(p.grad.norm())


def hooked(model: torch.nn.Module) -> list[str]:
    """Parameters that carry a tensor hook (gradsight's: the tests add none)."""
    return [name for name, p in model.named_parameters() if p._backward_hooks]


def penalty_step(model: MLP, x: torch.Tensor) -> None:
    """WGAN-GP style: a gradient taken with create_graph=True, then the loss that contains it."""
    out = model(x)
    (g,) = torch.autograd.grad(out.pow(2).sum(), [model.layer1.weight], create_graph=True)
    (out.pow(2).sum() + g.pow(2).sum()).backward()


def two_losses(model: MLP, x: torch.Tensor) -> None:
    out = model(x)
    out[:, 0].pow(2).sum().backward(retain_graph=True)
    out[:, 1].abs().sum().backward()


def test_a_gradient_penalty_step_counts_both_passes() -> None:
    """The leaves only the second pass reaches ran, got a gradient, and are not missing."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    penalty_step(model, x)
    graph = dbg.graph  # the second pass freed the graph: the step is shown at once
    assert graph.run.step == 1 and not graph.run.errors and not dbg._live.errors
    assert all(n.executed for n in graph.nodes)
    for name, p in model.named_parameters():  # the last pass's gradient: what .backward() put in .grad
        assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(grad_norm(p), rel=1e-5)
        assert dbg.inspect(f"leaf:{name}").history[-1].grad_norm == pytest.approx(grad_norm(p), rel=1e-6)
    assert not graph.missing
    assert "got a gradient" in dbg.why("layer2.weight").message
    assert any("2 backward passes" in note for note in graph.notes)
    assert dbg._live._ends.step is None and not hooked(model)  # the step's hooks went with it
    dbg.close()


def test_two_losses_on_one_forward_are_one_step_shown_after_the_last() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    plain = copy.deepcopy(model)
    two_losses(plain, x)  # the same step without gradsight: .grad must come out bitwise the same
    second = torch.autograd.grad(plain(x)[:, 1].abs().sum(), list(plain.parameters()))
    dbg = gs.debugger(model)
    out = model(x)
    out[:, 0].pow(2).sum().backward(retain_graph=True)
    assert dbg.graph.run.step == 0  # the graph was kept: another pass may come, the step is still open
    out[:, 1].abs().sum().backward()
    graph = dbg.graph
    assert graph.run.step == 1 and any("2 backward passes" in note for note in graph.notes)
    for (name, p), q, g in zip(model.named_parameters(), plain.parameters(), second, strict=True):
        assert torch.equal(p.grad, q.grad)  # type: ignore[arg-type]
        history = dbg.inspect(f"leaf:{name}").history
        assert [h.step for h in history] == [1]
        assert history[-1].grad_norm == pytest.approx(grad_norm(p), rel=1e-6)  # both losses' .grad
        assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(float(g.norm()), rel=1e-5)  # the last pass's
        assert history[-1].received_norm == graph.node(f"leaf:{name}").grad_norm
    assert not graph.missing and not hooked(model)
    dbg.close()


def test_a_single_backward_is_still_shown_at_once_as_one_pass() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    dbg = gs.debugger(model)
    for n in (1, 2):
        model.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        graph = dbg.graph
        assert graph.run.step == n and all(n.executed for n in graph.nodes) and not graph.missing
        assert not any("backward passes" in note for note in graph.notes)
        assert dbg._live._ends.step is None and not hooked(model)
        for name, p in model.named_parameters():
            assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(grad_norm(p), rel=1e-5)
    assert [h.step for h in dbg.inspect("leaf:layer1.weight").history] == [1, 2]
    dbg.close()


def test_autograd_grad_and_backward_inputs_still_leave_the_other_leaves_out() -> None:
    model, x = MLP(), torch.randn(2, 8)
    dbg = gs.debugger(model)
    torch.autograd.grad(model(x).sum(), [model.layer2.weight])  # frees the graph: shown at once
    graph = dbg.graph
    assert graph.run.step == 1 and graph.node("layer1/AddmmBackward0#0").executed is False
    assert sorted(m.name for m in graph.missing) == ["layer1.bias", "layer1.weight", "layer2.bias"]
    torch.autograd.grad(model(x).sum(), [model.layer2.weight], retain_graph=True)
    assert dbg.graph.run.step == 1  # kept: open until the cell ends (what IPython's post_run_cell calls)
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 2 and graph.node("leaf:layer2.weight").executed is True
    assert sorted(m.name for m in graph.missing) == ["layer1.bias", "layer1.weight", "layer2.bias"]
    model(x).sum().backward(inputs=[model.layer1.bias], retain_graph=True)
    model(x).sum().backward(inputs=[model.layer2.bias])  # the next step's forward ended step 3
    graph = dbg.graph
    assert graph.run.step == 4 and graph.node("leaf:layer2.bias").executed is True
    assert sorted(m.name for m in graph.missing) == ["layer1.bias", "layer1.weight", "layer2.weight"]
    assert [h.step for h in dbg.inspect("leaf:layer1.bias").history] == [1, 2, 3, 4]
    assert not any("backward passes" in note for note in graph.notes)
    dbg.close()


def test_a_pass_that_reaches_a_leaf_only_through_the_first_passs_graph_counts() -> None:
    """``x * self.scale``: the penalty's own backward reaches ``scale`` through the graph the first
    pass made (create_graph=True), never through a node of the step's graph."""

    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.scale = torch.nn.Linear(4, 3), torch.nn.Parameter(torch.tensor(2.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.lin(x)) * self.scale

    torch.manual_seed(0)
    model, x = Scaled(), torch.randn(5, 4)
    dbg = gs.debugger(model)
    out = model(x)
    (g,) = torch.autograd.grad(out.sum(), [model.lin.weight], create_graph=True)
    g.pow(2).sum().backward()  # frees only the penalty's graph: the step's is kept, the step open
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 1 and not graph.missing
    assert graph.node("leaf:scale").executed is True
    assert graph.node("leaf:scale").grad_norm == pytest.approx(grad_norm(model.scale), rel=1e-5)
    assert dbg.inspect("leaf:scale").history[-1].grad_norm == pytest.approx(grad_norm(model.scale), rel=1e-6)
    assert not hooked(model)
    dbg.close()


def test_gradsights_own_runs_and_evaluations_between_passes_are_no_part_of_the_step() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    out = model(x)
    out[:, 0].pow(2).sum().backward(retain_graph=True)
    with torch.no_grad():
        model(x)  # a validation pass: not a step, the step stays open
    gs.debugger(model, inputs=x, loss=lambda o: 1000 * o.sum())  # a look meanwhile: gradsight's own run
    second = torch.autograd.grad(out[:, 1].abs().sum(), list(model.parameters()), retain_graph=True)
    out[:, 1].abs().sum().backward()
    graph = dbg.graph
    assert graph.run.step == 1 and dbg._live.steps == 1
    assert any("3 backward passes" in note for note in graph.notes)  # the user's autograd.grad is one
    for (name, _), g in zip(model.named_parameters(), second, strict=True):
        assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(float(g.norm()), rel=1e-5)
    dbg.close()


def test_close_between_passes_removes_every_hook() -> None:
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    out = model(x)
    out[:, 0].sum().backward(retain_graph=True)
    assert hooked(model)  # the step is open, its leaves hooked
    dbg.close()
    assert not hooked(model) and not model._forward_hooks and not model._forward_pre_hooks
    out[:, 1].sum().backward()  # nothing recorded, nothing raised
    assert dbg.graph.run.step == 0


def test_a_failure_in_publishing_never_reaches_the_users_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)

    def broken(*_: object) -> None:
        raise RuntimeError("build broke")

    with monkeypatch.context() as m:
        m.setattr(live_step, "build_with_gradients", broken)
        two_losses(model, x)  # built in the last pass's end callback, inside the user's backward
        out = model(x)
        out.sum().backward(retain_graph=True)
        model(x).sum().backward()  # built in this forward's start hook, then in its backward
    assert dbg.graph.run.step == 0 and not hooked(model)
    assert dbg.error == "gradsight could not record a live step: RuntimeError: build broke"
    two_losses(model, x)
    assert dbg.graph.run.step == 4 and not dbg.graph.run.errors and not hooked(model)
    dbg.close()


def test_a_step_on_another_thread_stays_open_between_its_passes() -> None:
    """The kernel's cell may end (or marimo's loop turn) between a training thread's two passes: the
    step is that thread's, and ends with its last pass, not then."""
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    between, go = threading.Event(), threading.Event()

    def train() -> None:
        out = model(x)
        out[:, 0].pow(2).sum().backward(retain_graph=True)
        between.set()
        assert go.wait(WAIT)
        out[:, 1].abs().sum().backward()

    worker = threading.Thread(target=train)
    worker.start()
    try:
        assert between.wait(WAIT)
        dbg._live.cell_done()  # the kernel's thread: the end of a cell while the worker is between passes
        assert dbg.graph.run.step == 0 and hooked(model)
    finally:
        go.set()
        worker.join(WAIT)
    dbg._live.cell_done()
    graph = dbg.graph
    assert graph.run.step == 1 and any("2 backward passes" in note for note in graph.notes)
    assert not graph.missing and not hooked(model)
    dbg.close()


def test_a_cell_that_ends_after_a_kept_graphs_passes_shows_them(shell: InteractiveShell) -> None:
    shell.run_cell("from tests.run_zoo import MLP\nmodel = MLP()\ndbg = __import__('gradsight').debugger(model)")
    shell.run_cell(
        "out = model(torch.randn(3, 8))\n"
        "(g,) = torch.autograd.grad(out.sum(), [model.layer2.bias], create_graph=True)\n"
        "out[:, 0].sum().backward(retain_graph=True)\n"
        "(out[:, 1].sum() + g.pow(2).sum()).backward(retain_graph=True)"
    )
    dbg = shell.user_ns["dbg"]
    graph = dbg.graph  # every pass kept the graph: IPython's post_run_cell showed the step
    assert graph.run.step == 1 and any("3 backward passes" in note for note in graph.notes)
    assert not graph.missing and not hooked(shell.user_ns["model"])
    dbg.close()


def test_a_critic_called_again_before_the_last_pass_keeps_its_step_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """WGAN-GP with the penalty first: D(interp) is the step, its graph is differentiated once with
    create_graph=True, the critic is called on the real and fake batches, and the loss's backward
    runs D(interp)'s graph again: the step is not over at D(real)."""
    monkeypatch.setattr(gs.options, "live_interval", 1000.0)  # one capture: the first call
    torch.manual_seed(0)
    critic = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    real, fake = torch.randn(4, 8), torch.randn(4, 8)
    dbg = gs.debugger(critic)
    interp = (0.5 * real + 0.5 * fake).requires_grad_()
    d_i = critic(interp)
    (g,) = torch.autograd.grad(d_i.sum(), interp, create_graph=True)
    penalty = (g.norm(dim=1) - 1).pow(2).mean()
    (critic(fake).mean() - critic(real).mean() + 10 * d_i.mean() + penalty).backward()
    dbg._live.flush()
    graph = dbg.graph
    assert graph.run.step == 1 and not graph.missing
    for name, p in critic.named_parameters():
        assert graph.node(f"leaf:{name}").executed
        assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(grad_norm(p), rel=1e-5)
    dbg.close()


def test_a_retain_graph_loops_next_iteration_is_not_the_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A retain_graph=True loop with one step captured: the next iteration's backward reaches the
    same leaves but not the step's graph; it is not counted into the step."""
    monkeypatch.setattr(gs.options, "live_interval", 1000.0)
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    model(x).pow(2).sum().backward(retain_graph=True)
    first = grad_norm(model.layer1.weight)
    model(x).pow(2).sum().backward(retain_graph=True)  # .grad doubles: not the step's
    dbg._live._ends.cell_ended(threading.get_ident())  # the cell's end
    dbg._live.flush()
    graph = dbg.graph
    assert graph.run.step == 1 and not any("backward passes" in n for n in graph.notes)
    assert graph.node("leaf:layer1.weight").grad_norm == pytest.approx(first, rel=1e-5)
    assert dbg.inspect("leaf:layer1.weight").history[-1].grad_norm == pytest.approx(first, rel=1e-6)
    dbg.close()


def test_a_pass_that_raises_halfway_is_told() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    out = model(x)
    out[:, 0].sum().backward(retain_graph=True)

    def boom(_: torch.Tensor) -> None:
        raise ValueError("halfway")

    handle = model.layer1.weight.register_hook(boom)
    with pytest.raises(ValueError, match="halfway"):
        out[:, 1].mul(100).sum().backward()
    handle.remove()
    dbg._live._ends.cell_ended(threading.get_ident())  # the cell's end
    dbg._live.flush()
    assert dbg.graph.run.step == 1
    assert any("stopped before it ended" in note for note in dbg.graph.notes), dbg.graph.notes
    dbg.close()
