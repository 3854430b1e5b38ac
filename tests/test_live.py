"""Live mode: gradsight follows the user's own steps, whatever differentiates them, then lets go."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import torch

import gradsight as gs
from gradsight._capture import cell_end, live_pace, live_step
from tests.run_zoo import MLP
from tests.test_run import RunCase, assert_same, snapshot

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)


@pytest.fixture
def default_limits(every_step: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default capture limits, set after (over) the module's ``every_step``."""
    monkeypatch.setattr(gs.options, "live_interval", 0.5)  # config.Options' defaults
    monkeypatch.setattr(gs.options, "live_share", 0.1)


def step(model: MLP, x: torch.Tensor) -> torch.Tensor:
    loss = model(x).pow(2).mean()
    loss.backward()
    return loss


def test_live_view_follows_each_step() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    assert dbg.graph.run.mode == "live" and len(dbg.graph) == 0 and "waiting" in (dbg.graph.message or "").lower()
    x = torch.randn(4, 8)
    step(model, x)
    g1 = dbg.graph
    assert g1.run.step == 1 and g1.run.mode == "live"
    assert all(n.executed for n in g1.nodes)
    assert g1.node("layer2/AddmmBackward0#0").grad_in[0] is not None
    step(model, x)
    assert dbg.graph.run.step == 2
    history = dbg.inspect("leaf:layer1.weight").history
    assert [h.step for h in history] == [1, 2]
    # .grad accumulates across backward calls (the seed's accumulation example): norm doubles
    assert history[1].grad_norm == pytest.approx(2 * history[0].grad_norm, rel=1e-5)
    assert history[0].received_norm == pytest.approx(history[0].grad_norm, rel=1e-5)
    dbg.close()


def test_live_hooks_do_not_change_gradients() -> None:
    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(4, 8)
    step(model, x)
    expected = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    dbg = gs.debugger(model)
    step(model, x)
    assert all(torch.equal(p.grad, expected[k]) for k, p in model.named_parameters())
    dbg.close()


def test_autograd_grad_and_backward_inputs_mark_pruned_nodes() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    x = torch.randn(2, 8)
    loss = model(x).sum()
    torch.autograd.grad(loss, [model.layer2.weight])
    graph = dbg.graph
    assert graph.node("layer2/TBackward0#0").executed is True
    assert graph.node("layer1/AddmmBackward0#0").executed is False  # not needed for layer2.weight
    loss2 = model(x).sum()
    loss2.backward(inputs=[model.layer1.bias])
    graph = dbg.graph
    assert graph.run.step == 2
    assert graph.node("leaf:layer1.bias").executed is True
    assert graph.node("leaf:layer2.weight").executed is False
    dbg.close()


def test_close_removes_every_hook_and_later_steps_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MLP()
    case = RunCase(model, torch.randn(2, 8), None)
    x1, x2, x3 = torch.randn(3, 2, 8)
    before = snapshot(case)
    global_hooks = torch.nn.modules.module._global_forward_pre_hooks
    seen: list[int] = []
    probe = model.layer1.register_forward_hook(lambda *_: seen.append(len(global_hooks)))
    dbg = gs.debugger(model)
    assert model._forward_hooks and model._forward_pre_hooks
    step(model, x1)  # captured
    monkeypatch.setattr(dbg._live._pace, "interval", 3600.0)
    step(model, x2)  # not captured: the module-range hook is not even installed
    assert seen == [1, 0] and not global_hooks
    probe.remove()
    dbg.close()
    model.zero_grad(set_to_none=True)
    assert_same(before, snapshot(case))
    step(model, x3)
    assert dbg.graph.run.step == 1


def test_close_puts_back_parameters_without_a_hook_dict_and_keeps_the_users_hooks() -> None:
    # torch keeps a hook wrapper on a tensor once its _backward_hooks is set: an empty dict is not "as before".
    model = MLP()
    seen: list[float] = []
    dbg = gs.debugger(model)
    step(model, torch.randn(2, 8))
    handle = model.layer2.bias.register_hook(lambda g: seen.append(float(g.norm())))  # the user's, meanwhile
    step(model, torch.randn(2, 8))
    dbg.close()
    assert model.layer1.weight._backward_hooks is None and model.layer2.weight._backward_hooks is None
    assert len(model.layer2.bias._backward_hooks) == 1
    step(model, torch.randn(2, 8))
    assert len(seen) == 2
    handle.remove()


def test_stale_graph_from_an_earlier_step_does_not_pollute_the_next() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    x = torch.randn(3, 8)
    kept = model(x).sum()  # never backwarded (no step number), its graph (and AccumulateGrad nodes) stay alive
    loss = model(x).pow(2).sum()  # step 1 reuses the AccumulateGrad nodes of that call
    loss.backward()
    graph = dbg.graph
    assert graph.run.step == 1 and not graph.run.errors
    assert all(n.executed for n in graph.nodes)
    kept.backward()  # the first call's hooks were removed: nothing recorded, nothing raised
    assert dbg.graph.run.step == 1
    dbg.close()


def test_throttle_skips_fast_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 3600.0)
    model = MLP()
    dbg = gs.debugger(model)
    for _ in range(3):
        step(model, torch.randn(2, 8))
    assert dbg.graph.run.step == 1  # the first step is captured, the next ones within the hour are not
    dbg.close()


def test_captures_stay_a_small_share_of_training_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_share", 0.001)  # after one capture, wait ~1000x its duration
    model = MLP()
    dbg = gs.debugger(model)
    for _ in range(5):
        step(model, torch.randn(2, 8))
    assert dbg.graph.run.step == 1
    # a new notebook cell is interactive use: its first step is captured whatever the limits say
    assert dbg._live is not None
    dbg._live.cell_done()  # what IPython's post_run_cell event calls
    step(model, torch.randn(2, 8))
    step(model, torch.randn(2, 8))
    assert dbg.graph.run.step == 6  # the 6th forward, captured; the 7th is throttled again
    dbg.close()


def idle(dbg: gs.Debugger) -> float:
    """A person's pause before running a cell again: longer than what makes a step a new run."""
    assert dbg._live is not None
    return max(live_pace.IDLE_FLOOR, live_pace.IDLE_STEPS * dbg._live._pace.step_time) + 0.1


def test_without_ipython_a_step_after_the_loop_got_control_and_a_pause_is_a_new_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """marimo has no post_run_cell: its kernel runs cells inside an asyncio loop, and gradsight's
    callback on that loop publishes what is ready. The loop gets control at the end of a run of
    cells, but also at every await: only a step that comes after the loop got control and a pause
    (a person re-running a cell) is shown whatever the rate limits say."""
    monkeypatch.setattr(gs.options, "live_interval", 3600.0)
    model = MLP()

    async def kernel() -> None:
        dbg = gs.debugger(model)
        step(model, torch.randn(2, 8))
        step(model, torch.randn(2, 8))
        assert dbg.graph.run.step == 1  # the second step is throttled within the "cell"
        await asyncio.sleep(0)  # the loop gets control: an async training loop's next step comes at once
        step(model, torch.randn(2, 8))
        assert dbg.graph.run.step == 1
        await asyncio.sleep(idle(dbg))  # the cells are done; a person runs one again a moment later
        step(model, torch.randn(2, 8))
        assert dbg.graph.run.step == 4  # shown, right after a captured step, whatever the limits say
        time.sleep(idle(dbg))  # a pause inside one cell (the loop never got control): still one run
        step(model, torch.randn(2, 8))
        assert dbg.graph.run.step == 4
        await asyncio.sleep(idle(dbg))
        # a step that ends on another thread (CUDA's autograd workers) shows once the run is done
        worker = threading.Thread(target=step, args=(model, torch.randn(2, 8)))
        worker.start()
        worker.join(10)
        assert dbg.graph.run.step == 4
        await asyncio.sleep(0)
        assert dbg.graph.run.step == 6
        dbg.close()

    asyncio.run(kernel())


def test_without_ipython_a_pause_between_forward_and_backward_is_no_part_of_the_steps_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A step's forward in one cell and its backward in the next: how long a later step must wait to
    count as a new run goes by the step's own time, not by the person's pause between the cells."""
    monkeypatch.setattr(gs.options, "live_interval", 3600.0)
    model = MLP()

    async def kernel() -> None:
        dbg = gs.debugger(model)
        loss = model(torch.randn(2, 8)).pow(2).sum()
        await asyncio.sleep(0.6)
        loss.backward()
        assert dbg.graph.run.step == 1
        pause = idle(dbg)
        assert pause < 0.6
        await asyncio.sleep(pause)
        step(model, torch.randn(2, 8))
        assert dbg.graph.run.step == 2
        dbg.close()

    asyncio.run(kernel())


def count_published(dbg: gs.Debugger) -> list[int]:
    assert dbg._live is not None
    shown: list[int] = []
    publish = dbg._live._shelf._publish_fn

    def counted(captured: Any) -> None:
        shown.append(captured.graph.run.step)
        publish(captured)

    dbg._live._shelf._publish_fn = counted
    return shown


def train(model: MLP, n: int = 200) -> None:
    for _ in range(n):
        step(model, torch.randn(16, 8))
        time.sleep(0.001)  # the next batch (lets other threads run, as torch's kernels do)


def without_loop(model: MLP) -> list[int]:
    dbg = gs.debugger(model)
    shown = count_published(dbg)
    train(model)
    dbg.close()
    return shown


@pytest.mark.usefixtures("default_limits")
def test_without_ipython_a_training_thread_beside_an_idle_loop_keeps_the_rate_limits() -> None:
    """marimo's ``mo.Thread`` training: the kernel's loop idles and runs gradsight's callback after
    every step, which is not the end of a cell: the steps are captured as often as without a loop."""
    model = MLP()
    plain = without_loop(model)

    async def kernel() -> tuple[list[int], int, float]:
        dbg = gs.debugger(model)
        assert dbg._live is not None and dbg._live._pace.end_of_run is not None
        shown = count_published(dbg)
        turns = []
        callback = dbg._live._pace.end_of_run
        turn = callback._fn
        callback._fn = lambda: (turns.append(1), turn())[1]
        trainer = threading.Thread(target=train, args=(model,))
        start = time.monotonic()
        trainer.start()
        while trainer.is_alive():
            await asyncio.sleep(0.01)  # the kernel's loop, idle
        took = time.monotonic() - start
        await asyncio.sleep(cell_end.LOOP_HOLD * 2)
        assert dbg._live._shelf._ready is None  # every captured step published from the loop
        assert shown and dbg.graph.run.step == shown[-1]
        dbg.close()
        return shown, len(turns), took

    shown, turns, took = asyncio.run(kernel())
    assert len(shown) <= len(plain) + 3 and len(shown) <= 10, (shown, plain)  # 200 before the fix
    assert turns <= took / cell_end.LOOP_HOLD + len(shown) + 3  # the loop is not woken at every step


@pytest.mark.usefixtures("default_limits")
def test_without_ipython_an_async_training_loop_keeps_the_rate_limits() -> None:
    """A training loop that awaits in every step (``batch = await queue.get()``) gives the loop
    control at each step: no end of a cell, the steps are captured as often as without a loop."""
    model = MLP()
    plain = without_loop(model)

    async def training() -> list[int]:
        dbg = gs.debugger(model)
        shown = count_published(dbg)
        for _ in range(200):
            step(model, torch.randn(16, 8))
            time.sleep(0.001)
            await asyncio.sleep(0)
        await asyncio.sleep(cell_end.LOOP_HOLD * 2)
        dbg.close()
        return shown

    shown = asyncio.run(training())
    assert len(shown) <= len(plain) + 3 and len(shown) <= 10, (shown, plain)  # 200 before the fix


def test_a_debugger_made_on_a_kernel_thread_publishes_that_threads_steps() -> None:
    """``marimo run`` runs each session's kernel on a thread of its own, not the main thread."""
    import threading

    shown: list[int] = []

    def session() -> None:
        model = MLP()
        dbg = gs.debugger(model)
        step(model, torch.randn(2, 8))
        shown.append(dbg.graph.run.step)
        dbg.close()

    kernel = threading.Thread(target=session)
    kernel.start()
    kernel.join(30)
    assert shown == [1]


def test_eval_under_no_grad_is_ignored() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    x = torch.randn(4, 8)
    with torch.no_grad():
        model(x)
    assert dbg.graph.run.step == 0
    step(model, x)
    with torch.no_grad():
        model(x)  # a validation pass between training steps: not a step
    assert dbg.graph.run.step == 1 and len(dbg.graph) > 0  # the view still shows the training step
    step(model, x)
    assert dbg.graph.run.step == 2
    assert [h.step for h in dbg.inspect("leaf:layer1.weight").history] == [1, 2]
    dbg.close()


def test_live_rerun_replays_the_last_step_with_its_output_gradient() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    with pytest.raises(gs.RerunError, match="Nothing to re-run yet"):
        dbg.rerun()
    x = torch.randn(3, 8)
    out = model(x)
    out.pow(2).sum().backward()
    step = dbg.graph
    graph = dbg.rerun(requires_grad={"layer1": False})
    assert graph.run.root_gradient == "grad_output"
    assert sorted(n.leaf.name for n in graph.leaves if n.leaf) == ["layer2.bias", "layer2.weight"]
    assert graph.node("leaf:layer2.weight").grad_norm == pytest.approx(step.node("leaf:layer2.weight").grad_norm)
    assert model.layer1.weight.requires_grad
    assert dbg.graph.run.step == 0 and len(dbg.history) == 2  # the re-run did not count as a training step
    dbg.close()


def test_compiled_models_neither_break_nor_recompile_under_gradsight() -> None:
    # torch.compile inlines global module hooks and torch-function modes and guards on the hook dicts
    # and the mode stack: gradsight's hooks must stay invisible to it (no graph break: the model runs
    # as compiled) and keep their keys, and debuggers of a compiled model push no source tracker (a
    # mode): no run or step compiles the model again.
    import warnings

    from torch._dynamo.utils import counters

    torch.manual_seed(0)
    model = MLP()
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(4, 8)
    expected = torch.autograd.grad(compiled(x).pow(2).mean(), list(model.parameters()))
    counters.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dbg = gs.debugger(compiled, inputs=x, loss=lambda out: out.pow(2).mean())
        compiled_once = counters["stats"]["unique_graphs"]
        gs.debugger(compiled, inputs=x, loss=lambda out: out.pow(2).mean())
        live = gs.debugger(compiled)
        for _ in range(3):
            step(compiled, x)
        live.close()
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert compiled_once == 0 and counters["stats"]["unique_graphs"] == 0
    assert not [w for w in caught if "global hooks" in str(w.message)]
    node = dbg.graph.find("CompiledFunctionBackward")[0]
    assert node.opaque_kind == "compiled"
    leaves = {n.id for n in dbg.graph.nodes if n.kind == "leaf"}
    assert leaves == {f"leaf:{name}" for name, _ in model.named_parameters()}
    for (name, _), g in zip(model.named_parameters(), expected, strict=True):
        assert dbg.graph.node(f"leaf:{name}").grad_norm == pytest.approx(float(g.norm()), rel=1e-6)
    assert live.graph.run.step == 3


def test_a_model_that_returns_its_loss_and_logits_has_one_root() -> None:
    class WithLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            logits = self.head(x)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    model = WithLoss()
    dbg = gs.debugger(model)
    model(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1]))["loss"].backward()
    graph = dbg.graph
    assert [n.name for n in graph.nodes if n.kind == "root"] == ["NllLossBackward0"]
    names = [n.name for n in graph.nodes]
    assert names.index("LogSoftmaxBackward0") < names.index("AddmmBackward0")  # backward order: consumers first
    dbg.close()


def test_a_followed_model_can_be_copied_and_saved() -> None:
    # copy.deepcopy (an EMA model, a snapshot) and torch.save(model) copy a module's hooks with it
    import copy
    import io

    model = MLP()
    dbg = gs.debugger(model)
    x = torch.randn(2, 8)
    step(model, x)
    ema = copy.deepcopy(model)
    step(ema, x)  # the copy is not followed
    assert dbg.graph.run.step == 1
    buffer = io.BytesIO()
    torch.save(model, buffer)
    assert b"LiveSession" not in buffer.getvalue()
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded(x), model(x))
    step(model, x)  # the original still is (loaded(x) had no backward: no step)
    assert dbg.graph.run.step == 2
    dbg.close()


def test_leaves_asked_for_by_autograd_grad_show_what_it_returned() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    loss = model(torch.randn(3, 8)).pow(2).sum()
    gw, gb = torch.autograd.grad(loss, [model.layer1.weight, model.layer1.bias])
    graph = dbg.graph
    for name, g in (("layer1.weight", gw), ("layer1.bias", gb)):
        node = graph.node(f"leaf:{name}")
        assert node.executed is True and node.grad_norm == pytest.approx(float(g.norm()), rel=1e-6)
    assert graph.node("leaf:layer2.weight").executed is False  # not asked for
    assert sorted(m.name for m in graph.missing) == ["layer2.bias", "layer2.weight"]
    assert not model.layer1.weight._backward_hooks  # the leaf's tensor hook is gone with the step
    dbg.close()


def test_a_runnable_debugger_of_the_same_model_is_no_live_step() -> None:
    model = MLP()
    live = gs.debugger(model)
    x = torch.randn(2, 8)
    step(model, x)
    gs.debugger(model, inputs=x, loss=lambda out: out.pow(2).sum())  # just a look, meanwhile
    assert live.graph.run.step == 1 and live._live.steps == 1
    assert [h.step for h in live.inspect("leaf:layer1.weight").history] == [1]
    live.close()


def test_sparse_and_complex_gradients_in_the_grad_history() -> None:
    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4, sparse=True)
            self.w = torch.nn.Parameter(torch.randn(4, 2, dtype=torch.cfloat))

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return (self.emb(idx).to(torch.cfloat) @ self.w).abs().sum()

    model = Tagger()
    dbg = gs.debugger(model)
    model(torch.tensor([1, 2, 2])).backward()
    assert dbg.graph.run.step == 1 and len(dbg.graph) > 0 and not dbg._live.errors
    emb, w = dbg.inspect("leaf:emb.weight").history, dbg.inspect("leaf:w").history
    assert emb[0].grad_norm == pytest.approx(float(model.emb.weight.grad.to_dense().norm()), rel=1e-6)  # type: ignore[union-attr]
    assert w[0].grad_norm == pytest.approx(float(model.w.grad.norm()), rel=1e-6)  # type: ignore[union-attr]
    dbg.close()


def test_a_step_whose_extras_fail_still_shows_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    model = MLP()
    dbg = gs.debugger(model)

    def broken(*_: object) -> None:
        raise RuntimeError("history broke\n" + "dispatcher dump " * 500)

    monkeypatch.setattr(live_step.LiveStep, "record_history", broken)
    step(model, torch.randn(2, 8))
    assert dbg.graph.run.step == 1 and len(dbg.graph) > 0
    assert dbg.error == "gradsight could not record a live step: RuntimeError: history broke"
    assert any("history broke" in e for e in dbg.graph.run.errors)
    dbg.close()


def _global_state() -> tuple[object, ...]:
    import warnings

    module = torch.nn.modules.module
    return (
        list(warnings.filters), warnings.showwarning, torch.overrides._get_current_function_mode_stack(),
        dict(module._global_forward_pre_hooks), dict(module._global_forward_hooks), torch.is_grad_enabled(),
    )  # fmt: skip


def test_a_keyboard_interrupt_in_a_followed_forward_leaves_nothing_behind() -> None:
    # torch skips always_call forward hooks on KeyboardInterrupt: the step's tracker must not stay
    model = MLP()
    before = _global_state()
    dbg = gs.debugger(model)
    interrupt = model.layer2.register_forward_hook(lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        model(torch.randn(2, 8))
    interrupt.remove()
    step(model, torch.randn(2, 8))  # the next step still shows
    assert dbg.graph.run.step == 1 and len(dbg.graph) > 0
    interrupt = model.layer2.register_forward_hook(lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # and once more, then only close()
        model(torch.randn(2, 8))
    interrupt.remove()
    dbg.close()
    assert _global_state() == before


def test_two_live_debuggers_on_one_model_leave_warnings_alone() -> None:
    import warnings

    model = MLP()
    before = _global_state()
    a, b = gs.debugger(model), gs.debugger(model)  # a notebook cell run twice: b replaces a
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        step(model, torch.randn(2, 8))
        warnings.warn("the user's own warning", stacklevel=1)
    assert [str(w.message) for w in seen] == ["the user's own warning"]
    assert (a.graph.run.step, a.status, b.graph.run.step) == (0, "error", 1)
    a.close()
    b.close()
    assert _global_state() == before


def test_a_pending_step_is_not_finished_by_gradsights_own_runs() -> None:
    torch.manual_seed(0)
    model, x = MLP(), torch.randn(4, 8)
    live = gs.debugger(model)
    loss = model(x).pow(2).sum()  # its backward comes later
    gs.debugger(model, inputs=x, loss=lambda out: 1000 * out.sum())  # a look meanwhile
    loss.backward()
    assert live.graph.node("leaf:layer1.weight").grad_norm == pytest.approx(float(model.layer1.weight.grad.norm()))  # type: ignore[union-attr]
    assert [h.step for h in live.inspect("leaf:layer1.weight").history] == [1]
    live.close()


def test_steps_in_another_thread_are_followed_during_a_runnable_run() -> None:
    import threading

    followed, other = MLP(), MLP()
    live = gs.debugger(followed)
    inside, done = threading.Event(), threading.Event()

    class Waits(torch.nn.Module):  # the runnable run's forward waits for the other thread's step
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            inside.set()
            assert done.wait(10)
            return other(x)

    def train() -> None:
        assert inside.wait(10)
        step(followed, torch.randn(2, 8))
        done.set()

    worker = threading.Thread(target=train)
    worker.start()
    gs.debugger(Waits(), inputs=torch.randn(2, 8), loss=lambda out: out.sum())
    worker.join(10)
    live._live.flush()
    assert live._live.steps == 1 and live.graph.run.step == 1
    live.close()


def test_one_shot_saved_tensor_hooks_are_left_to_the_users_backward() -> None:
    model, x = MLP(), torch.randn(4, 8)
    offloaded: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> int:
        offloaded[len(offloaded)] = t.detach().clone()
        return len(offloaded) - 1

    dbg = gs.debugger(model)
    with torch.autograd.graph.saved_tensors_hooks(pack, offloaded.pop):  # unpacking frees the copy
        step(model, x)  # raised KeyError when gradsight had unpacked them first
    node = dbg.graph.find("AddmmBackward0")[0]
    assert "saved_tensors_hooks" in node.saved["_saved_mat1"].reason  # type: ignore[union-attr]
    dbg.close()


def test_an_evaluation_on_another_thread_during_a_captured_forward() -> None:
    import threading

    inside, evaluated = threading.Event(), threading.Event()

    class Slow(MLP):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if threading.current_thread() is not threading.main_thread():
                inside.set()
                assert evaluated.wait(10)
            return super().forward(x)

    model = Slow()
    dbg = gs.debugger(model)
    left: list[object] = []

    def train() -> None:
        step(model, torch.randn(2, 8))
        left.append(torch.overrides._get_current_function_mode_stack())

    worker = threading.Thread(target=train)
    worker.start()
    assert inside.wait(10)
    with torch.no_grad():
        model(torch.randn(2, 8))  # the main thread evaluates while the worker's forward is captured
    evaluated.set()
    worker.join(10)
    dbg._live.flush()
    assert left == [[]]  # the worker's tracker came off its own stack
    assert dbg.graph.run.step == 1 and len(dbg.graph) > 0
    dbg.close()


def test_following_a_module_trained_through_its_compiled_wrapper_does_not_recompile() -> None:
    from torch._dynamo.utils import counters

    class Res(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.bn, self.l2 = torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.l2(torch.relu(self.bn(self.l1(x))) + x)

    torch._dynamo.reset()
    model, x = Res(), torch.randn(6, 8)
    compiled = torch.compile(model, backend="eager")
    compiled(x)
    graphs = counters["stats"]["unique_graphs"]
    dbg = gs.debugger(model)  # the inner module: its hooks run inside dynamo's trace
    for _ in range(3):
        compiled(x).pow(2).sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs  # tracing gradsight's capture code recompiled
    assert "torch.compile'd wrapper" in (dbg.graph.message or "")
    dbg.close()
    torch._dynamo.reset()


class TTA(torch.nn.Module):
    """Test-time augmentation: the forward averages two calls of the model itself."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, tta: bool = True) -> torch.Tensor:
        if tta:
            return (self(x, tta=False) + self(x.flip(0), tta=False)) / 2
        return self.head(torch.relu(self.body(x)))


class Refine(torch.nn.Module):
    """Weight-tied recursion: the forward calls the model on its own hidden state."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.out = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, depth: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.inp(x))
        if depth > 0:
            h = h + self(h, depth - 1)[1]
        return self.out(h), h


@pytest.mark.parametrize("model_type", [TTA, Refine])
def test_a_model_that_calls_itself_is_one_step(model_type: type[torch.nn.Module]) -> None:
    torch.manual_seed(0)
    model = model_type()
    dbg = gs.debugger(model)
    for n in (1, 2):
        out = model(torch.randn(4, 8))
        (out if isinstance(out, torch.Tensor) else out[0]).pow(2).sum().backward()
        graph = dbg.graph
        assert dbg._live.steps == n and graph.run.step == n
        assert [graph.node(r).name for r in graph.roots] == ["DivBackward0" if model_type is TTA else "AddmmBackward0"]
        assert not graph.missing and not dbg._live.errors
        for name, p in model.named_parameters():  # each leaf once, with what its one backward gave it
            assert graph.node(f"leaf:{name}").grad_norm == pytest.approx(float(p.grad.norm()), rel=1e-5)  # type: ignore[union-attr]
        model.zero_grad()
    dbg.close()


def test_nested_calls_of_steps_not_captured_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 3600.0)
    model = TTA()
    dbg = gs.debugger(model)
    for _ in range(3):
        model(torch.randn(4, 8)).sum().backward()
    assert dbg._live.steps == 3 and dbg.graph.run.step == 1
    dbg.close()


def test_a_submodule_replaced_or_added_after_attaching_is_named() -> None:
    """A new head for fine-tuning, an adapter wrapped around a layer: the later steps name their
    parameters and modules, and the replaced module is not kept alive."""
    import gc
    import weakref

    model, x = MLP(), torch.randn(5, 8)
    dbg = gs.debugger(model)
    step(model, x)
    old = weakref.ref(model.layer2)
    model.layer2 = torch.nn.Linear(16, 4)  # type: ignore[assignment]
    gc.collect()
    assert old() is None  # the debugger held it (module ranges) until close()
    step(model, x)
    graph = dbg.graph
    assert sorted(n.leaf.name for n in graph.leaves if n.leaf) == [
        "layer1.bias", "layer1.weight", "layer2.bias", "layer2.weight",
    ]  # fmt: skip
    assert {n.module for n in graph.nodes} >= {"layer1", "layer2"} and not graph.missing
    assert graph.node("leaf:layer2.weight").grad_norm == pytest.approx(float(model.layer2.weight.grad.norm()))  # type: ignore[union-attr]
    assert "got a gradient" in dbg.why("layer2.weight").message
    assert [h.step for h in dbg.inspect("leaf:layer2.weight").history] == [2]  # the new head: a history of its own
    model.layer2 = torch.nn.Sequential(model.layer2, torch.nn.Linear(4, 4))  # type: ignore[assignment]
    step(model, x)
    graph = dbg.graph
    assert {"leaf:layer2.0.weight", "leaf:layer2.1.weight"} <= {n.id for n in graph.nodes}
    assert {"layer2.0", "layer2.1"} <= {n.module for n in graph.nodes} and not graph.missing
    assert "layer2.1.weight" in {c.name for c in graph.controls.leaves}
    dbg.close()


def test_a_backward_interrupted_then_retried_shows_the_step() -> None:
    """A user's hook raises KeyboardInterrupt in the step's backward (the engine drops the callback
    gradsight queued in it); the retried backward of the same graph finishes the step."""
    model, x = MLP(), torch.randn(5, 8)
    dbg = gs.debugger(model)
    interrupt = [True]

    def hook(grad: torch.Tensor) -> None:
        if interrupt[0]:
            raise KeyboardInterrupt

    model.layer2.weight.register_hook(hook)
    loss = model(x).pow(2).mean()
    with pytest.raises(KeyboardInterrupt):
        loss.backward(retain_graph=True)
    assert dbg.graph.run.step == 0
    interrupt[0] = False
    model.zero_grad()
    loss.backward()
    graph = dbg.graph
    assert graph.run.step == 1 and dbg._live._ends.step is None and not dbg._live.errors
    assert graph.node("leaf:layer1.weight").grad_norm == pytest.approx(float(model.layer1.weight.grad.norm()))  # type: ignore[union-attr]
    step(model, x)
    assert dbg.graph.run.step == 2
    dbg.close()
    assert list(model.layer2.weight._backward_hooks.values()) == [hook]  # type: ignore[union-attr]


def test_live_steps_show_the_source_line_of_each_op() -> None:
    model = MLP()
    dbg = gs.debugger(model)
    step(model, torch.randn(2, 8))
    source = dbg.graph.node("layer2/AddmmBackward0#0").source
    assert source is not None and source.endswith("return self.layer2(F.relu(self.layer1(x)))")
    dbg.close()


def test_a_live_re_run_keeps_the_steps_line_for_ops_no_user_frame_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    lin = torch.nn.Linear(16, 4)
    dbg = gs.debugger(lin)
    lin(torch.randn(8, 16)).pow(2).sum().backward()  # the step: a bare nn.Linear's op has no frame of ours
    dbg._live.flush()
    shown = dbg.graph.find("AddmmBackward0")[0].source
    assert shown is not None and "lin(torch.randn(8, 16))" in shown

    def from_the_view() -> gs.Graph:  # stands in for ipywidgets' dispatch of a Re-run click
        return dbg.rerun()

    assert from_the_view().find("AddmmBackward0")[0].source == shown
    dbg.close()
