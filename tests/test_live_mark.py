"""Live step numbers of the steps live mode does not capture (``live_mark``): the pre-hooks that number
them come off at ``close()``, a long run does not pile them up, a model returning the same tensor at
every call carries one; a pass that builds a graph of its own (``create_graph=True``) does not end its
step: a WGAN-GP critic iteration is one step, a Hessian-vector product too, a loop that only takes
``create_graph`` gradients still numbers each iteration."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight._capture.live_mark import PRUNE_AT, backward_caller
from tests.run_zoo import MLP
from tests.test_live_failures import LOSS
from tests.test_live_steps_numbers import captured, train

__all__ = ["captured"]  # (the fixture, used by name)


@pytest.fixture
def first_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a debugger's first step is captured (an hour's interval, no cell ends): the rest are
    numbered by the marks."""
    monkeypatch.setattr(gs.options, "live_interval", 3600.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)


def prehooks(fn: torch.autograd.graph.Node) -> int:
    """The Python pre-hooks on a node (gradsight's: the tests add none), read through a probe's handle."""
    probe = fn.register_prehook(lambda _: None)
    hooks = probe.hooks_dict_ref()
    probe.remove()
    assert hooks is not None
    return len(hooks)


def node(t: torch.Tensor) -> torch.autograd.graph.Node:
    assert t.grad_fn is not None
    return t.grad_fn


@pytest.mark.usefixtures("first_only")
def test_close_removes_the_marks_of_graphs_still_alive() -> None:
    """Outputs the user keeps, not differentiated yet or differentiated with retain_graph=True: their
    marks come off with close(), and a backward afterwards numbers nothing."""
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(3, 8)
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    model(x).sum().backward()  # the captured step
    waiting = [model(x) for _ in range(3)]  # no backward yet
    kept = model(x)
    kept.sum().backward(retain_graph=True)  # its mark fired: the next pass may still run the graph
    assert [prehooks(node(t)) for t in waiting] == [1, 1, 1]
    dbg.close()
    assert [prehooks(node(t)) for t in [*waiting, kept]] == [0, 0, 0, 0]
    waiting[0].sum().backward()
    assert live.steps == 2  # the captured step and kept's


@pytest.mark.usefixtures("first_only")
def test_a_long_run_keeps_only_the_marks_that_may_still_fire() -> None:
    """2,000 steps with a DQN target call (a graph gone at once) and the outputs kept after their
    backward (graphs alive, marks fired): the marks kept stay bounded, fired ones come off the node."""
    torch.manual_seed(0)
    model = MLP()
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    outputs = []
    for i in range(1, 2001):
        q = model(torch.randn(2, 8))
        model(torch.randn(2, 8)).detach()  # no backward reaches it: its graph goes at once
        q.sum().backward()
        outputs.append(q)  # (their graphs stay, freed of their saved tensors)
        assert len(live._marks) <= 2 * PRUNE_AT, i
    assert live.steps == 2000
    assert sum(prehooks(node(q)) for q in outputs[: -2 * PRUNE_AT]) == 0
    dbg.close()
    assert sum(prehooks(node(q)) for q in outputs) == 0


class Cached(torch.nn.Module):
    """Returns the same tensor (one graph node) at every call, made at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 4))
        self.out: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out is None:
            self.out = self.w + 1  # (AddBackward0 saves no tensor: every backward may run it again)
        return self.out


@pytest.mark.usefixtures("first_only")
def test_a_cached_output_carries_one_mark_whatever_the_calls() -> None:
    torch.manual_seed(0)
    model, x = Cached(), torch.randn(3, 4)
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    for i in range(1, 101):
        out = model(x)
        model(x)  # a second call before the backward: still one mark on the node
        assert i == 1 or prehooks(node(out)) == 1, i
        (out * x).sum().backward()
        assert live.steps == i  # the mark moved to the last call still numbers the step
    assert len(live._marks) <= 2 * PRUNE_AT  # the replaced marks' handles are dropped too
    dbg.close()
    assert prehooks(node(model(x))) == 0


def critic_step(order: str, model: MLP, opt: torch.optim.Optimizer) -> Callable[[int], None]:
    """A WGAN-GP critic iteration: the penalty's gradient over D(interp) with create_graph=True, before
    or after the critic's calls on the real and fake batches, then the loss's backward."""

    def step(_: int) -> None:
        real, fake, e = torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 1)
        interp = (e * real + (1 - e) * fake).requires_grad_()

        def penalty() -> torch.Tensor:
            (g,) = torch.autograd.grad(model(interp).sum(), interp, create_graph=True)
            return (g.norm(2, dim=1) - 1).pow(2).mean()

        gp = penalty() if order == "penalty first" else None
        loss = model(fake).mean() - model(real).mean()
        opt.zero_grad()
        (loss + 10 * (penalty() if gp is None else gp)).backward()
        opt.step()

    return step


@pytest.mark.parametrize("order", ["penalty last", "penalty first"])
def test_a_wgan_gp_critic_iteration_is_one_step(captured: str, order: str) -> None:
    torch.manual_seed(0)
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    dbg = gs.debugger(model)
    train(dbg, captured, 3, critic_step(order, model, opt))  # steps 1, 2, 3: each shown with its number
    steps = {h.step for h in dbg.inspect("leaf:layer1.weight").history}
    assert sorted(steps) == ([1, 2, 3] if captured == "every step" else [1, 3])
    dbg.close()


def test_a_plain_loop_and_a_hessian_vector_product_count_as_before(captured: str) -> None:
    """Two micro-batches' backward per iteration are two steps; a Hessian-vector product (a
    create_graph gradient, then the gradient of its product with v) is one."""
    torch.manual_seed(0)
    model = MLP()
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    for i in range(1, 4):
        model(torch.randn(4, 8)).pow(2).mean().backward()
        model(torch.randn(4, 8)).pow(2).mean().backward()
        assert live.steps == 2 * i
    params = list(model.parameters())
    for i in range(1, 4):
        if i == 3:
            live.cell_done()  # (first and last: the last one is captured)
        grads = torch.autograd.grad(model(torch.randn(4, 8)).pow(2).mean(), params, create_graph=True)
        torch.autograd.grad(sum((g * torch.ones_like(g)).sum() for g in grads), params)
        assert live.steps == 6 + i
    live.cell_done()
    assert dbg.graph.run.step == 9 and not live.errors
    dbg.close()


def test_a_loop_of_create_graph_gradients_alone_numbers_each_iteration(captured: str) -> None:
    """No backward ever differentiates what they made (an input-gradient regularizer's value, only
    looked at): each iteration is a step; a second create_graph gradient of one forward is its step."""
    torch.manual_seed(0)
    model = MLP()
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    for i in range(1, 4):
        if i == 3:
            live.cell_done()
        x = torch.randn(4, 8, requires_grad=True)
        (g,) = torch.autograd.grad(model(x).pow(2).sum(), x, create_graph=True)
        torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)
        assert live.steps == i
    live.cell_done()
    assert dbg.graph.run.step == 3 and not live.errors
    dbg.close()


def test_the_end_of_a_cell_ends_what_a_create_graph_pass_left_open(captured: str) -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8, requires_grad=True)
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    torch.autograd.grad(model(x).sum(), x, create_graph=True)
    live.cell_done()
    model(torch.randn(4, 8)).sum().backward()  # the next cell's own step
    assert live.steps == 2
    dbg.close()


def test_a_penalty_steps_backward_that_raised_takes_the_penaltys_number(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss's backward raised above the model after the penalty's create_graph pass: the failed
    step is the penalty's, not one more."""
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    torch.manual_seed(0)
    shell.user_ns.update(model=MLP(), x=torch.randn(3, 8))
    shell.run_cell(LOSS + "dbg = __import__('gradsight').debugger(model)\nmodel(x).sum().backward()\nmodel(x)")
    dbg = shell.user_ns["dbg"]
    assert dbg.graph.run.step == 1 and dbg.status == "ready"
    result = shell.run_cell(
        "i = x.clone().requires_grad_()\n"
        "(g,) = torch.autograd.grad(model(i).sum(), i, create_graph=True)\n"
        "(Broken.apply(model(x)).sum() + g.pow(2).sum()).backward()"
    )
    assert type(result.error_in_exec) is ValueError
    assert dbg._live.steps == 2 and dbg.graph.run.step == 2 and dbg.status == "error", dbg.error
    dbg.close()


@pytest.mark.usefixtures("first_only")
def test_a_lazy_r1_penaltys_own_backward_ends_its_step() -> None:
    """StyleGAN2's lazy R1 every 4th step: D(real)'s create_graph gradient, then a backward of the
    penalty alone, which reaches no output of D. The generator's step after it (new calls of D) is a
    step of its own, not the R1 pass's: one step per backward pass reaching D, 18 in all."""
    torch.manual_seed(0)
    model, generator = MLP(), torch.nn.Linear(4, 8)
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    passes = 0
    for i in range(1, 9):
        real, z = torch.randn(4, 8), torch.randn(4, 4)
        (model(generator(z).detach()).mean() - model(real).mean()).backward()  # D's step
        passes += 1
        if i % 4 == 0:
            r = real.clone().requires_grad_()
            (g,) = torch.autograd.grad(model(r).sum(), r, create_graph=True)
            (10 * g.pow(2).sum()).backward()  # R1: no output of D on its way
            passes += 1
        (-model(generator(z)).mean()).backward()  # G's step, through D
        passes += 1
        assert live.steps == passes, i
    dbg.close()


@pytest.mark.usefixtures("first_only")
def test_a_create_graph_pass_leaves_its_step_open_to_its_own_thread_only() -> None:
    """Thread A's penalty (a create_graph pass), then thread B's whole step, then A's loss backward:
    B's step is its own, A's backward ends A's step."""
    torch.manual_seed(0)
    model = MLP()
    dbg = gs.debugger(model)
    live = dbg._live
    assert live is not None
    model(torch.randn(4, 8)).sum().backward()  # the captured step
    penalty_done, other_done = threading.Event(), threading.Event()
    steps: list[int] = []

    def critic() -> None:
        x = torch.randn(4, 8, requires_grad=True)
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        steps.append(live.steps)
        penalty_done.set()
        other_done.wait(10)
        (model(torch.randn(4, 8)).mean() + g.pow(2).sum()).backward()
        steps.append(live.steps)

    a = threading.Thread(target=critic)
    a.start()
    assert penalty_done.wait(10)
    model(torch.randn(4, 8)).sum().backward()  # thread B (this one): a step of its own
    steps.append(live.steps)
    other_done.set()
    a.join(10)
    assert steps == [2, 3, 3]
    dbg.close()


def test_a_device_threads_pass_is_keyed_by_the_thread_that_called_backward() -> None:
    """A hook on a thread outside any backward call (CUDA's device threads run a pass's hooks) finds
    the one thread inside one: the pass's hold is that thread's."""
    inside, leave = threading.Event(), threading.Event()
    callers: list[int] = []

    def blocking_hook(grad: torch.Tensor) -> None:
        callers.append(backward_caller())  # on the calling thread itself (a CPU pass)
        inside.set()
        leave.wait(10)

    def worker() -> None:
        x = torch.ones(2, requires_grad=True)
        y = x * 2
        y.register_hook(blocking_hook)
        y.sum().backward()

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert inside.wait(10)
        callers.append(backward_caller())  # (this thread is in no backward: as a device thread is)
    finally:
        leave.set()
        t.join(10)
    assert callers == [t.ident, t.ident]
    assert backward_caller() == threading.get_ident()  # no thread in a backward: this one
