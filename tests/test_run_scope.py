"""gs.debugger(fn) names the modules fn reaches through the functions it calls, several calls deep."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import gradsight as gs
from gradsight.runs import RerunError

lin1 = nn.Linear(6, 6)
lin2 = nn.Linear(6, 2)
layers = [nn.Linear(6, 6), nn.Linear(6, 6)]
x = torch.randn(3, 6)


def blk(t: torch.Tensor) -> torch.Tensor:
    return torch.tanh(lin1(t))


def body() -> torch.Tensor:
    return lin2(blk(x)).pow(2).sum()


def through_checkpoint() -> torch.Tensor:
    return lin2(checkpoint(blk, x, use_reentrant=False)).pow(2).sum()


def stacked(t: torch.Tensor) -> torch.Tensor:
    return sum(layer(t) for layer in layers)  # type: ignore[return-value]  # names read in a generator's code


def modules_of(dbg: gs.Debugger) -> dict[str, Any]:
    return {n.id: n.module for n in dbg.graph.nodes}


def test_modules_two_calls_deep_are_named() -> None:
    def step() -> torch.Tensor:  # step → body → blk, which calls lin1
        return body() * 2

    for fn in (step, lambda: through_checkpoint() * 2):
        dbg = gs.debugger(fn)
        got = modules_of(dbg)
        assert got["lin1/AddmmBackward0#0"] == "lin1" and got["lin2/AddmmBackward0#0"] == "lin2", got
        assert {n.leaf.name for n in dbg.graph.leaves if n.leaf is not None} == {
            "lin1.weight", "lin1.bias", "lin2.weight", "lin2.bias"
        }  # fmt: skip
        dbg.close()


def test_closures_deep_and_names_in_nested_code_are_followed() -> None:
    def inner(t: torch.Tensor) -> torch.Tensor:
        return stacked(t)

    def middle() -> torch.Tensor:
        return inner(x).sum()

    def outer() -> torch.Tensor:
        return middle() + 0

    dbg = gs.debugger(outer)
    names = {n.leaf.name for n in dbg.graph.leaves if n.leaf is not None}
    assert names == {"layers[0].weight", "layers[0].bias", "layers[1].weight", "layers[1].bias"}, names
    dbg.close()


def test_recursive_functions_end() -> None:
    def down(n: int) -> torch.Tensor:
        return lin2(x).sum() if n == 0 else down(n - 1) + 0

    dbg = gs.debugger(lambda: down(3))
    assert dbg.status == "ready" and modules_of(dbg)["lin2/AddmmBackward0#0"] == "lin2"
    dbg.close()


# A teacher model and a lazy eval head named only in helpers the step does not call (a flag is off).
student = nn.Linear(6, 6)
teacher = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6))
eval_head = nn.LazyLinear(3)
DISTILL = False
EVALUATE = False


def distill(h: torch.Tensor) -> torch.Tensor:
    return (h - teacher(x)).pow(2).mean()


def evaluate(h: torch.Tensor) -> torch.Tensor:
    return eval_head(h).sum()


def loss_of(h: torch.Tensor) -> torch.Tensor:
    extra = distill(h) if DISTILL else evaluate(h) if EVALUATE else 0
    return h.pow(2).mean() + extra


def student_step() -> torch.Tensor:  # student_step → train_body → loss_of → distill / evaluate
    return train_body()


def train_body() -> torch.Tensor:
    return loss_of(student(x))


def leaf_names(dbg: gs.Debugger) -> set[str]:
    return {str(n.leaf.name) for n in dbg.graph.leaves if n.leaf is not None}


def test_modules_named_only_deep_on_a_path_not_taken_are_not_expected_to_get_gradients() -> None:
    global DISTILL, EVALUATE
    dbg = gs.debugger(student_step)  # not refused for the lazy eval head the step never calls
    assert dbg.status == "ready", dbg.error
    assert dbg.graph.missing == (), dbg.graph.missing  # the teacher's parameters are not "missing"
    assert leaf_names(dbg) == {"student.weight", "student.bias"}
    assert not any(name.startswith(("teacher", "eval_head")) for name in dbg.graph.controls.modules)
    try:
        DISTILL = True  # the teacher runs now: its leaves are named
        dbg.rerun()
        assert leaf_names(dbg) == {"student.weight", "student.bias", *(f"teacher.{i}.{p}" for i in (0, 1)
                                                                       for p in ("weight", "bias"))}  # fmt: skip
        dbg.rerun()  # and its nodes' modules from the run after the one it first ran in
        assert {n.module for n in dbg.graph.nodes if n.module} >= {"student", "teacher.0", "teacher.1"}
        DISTILL, EVALUATE = False, True  # the lazy head runs: refused, not initialized by gradsight
        with pytest.raises(RerunError, match="lazy module eval_head, which is not initialized"):
            dbg.rerun()
        assert eval_head.has_uninitialized_params()
    finally:
        DISTILL = EVALUATE = False
        dbg.close()


def test_a_deep_module_the_step_runs_from_the_start_is_named_at_once() -> None:
    global DISTILL
    DISTILL = True
    try:
        dbg = gs.debugger(student_step)
    finally:
        DISTILL = False
    assert dbg.graph.missing == ()
    assert modules_of(dbg)["teacher.1/AddmmBackward0#0"] == "teacher.1"
    assert "teacher.0.weight" in leaf_names(dbg)
    dbg.close()


net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
first = net[0]


def log_stats() -> float:
    return first.weight.norm().item()


def net_body() -> torch.Tensor:
    log_stats()
    return net(x)


def test_the_nearer_name_wins() -> None:  # `first` is named two calls down, `net` by the step's body
    dbg = gs.debugger(lambda: net_body().sum())
    assert leaf_names(dbg) == {"net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"}
    assert modules_of(dbg)["net.0/AddmmBackward0#0"] == "net.0"
    dbg.close()


def c4() -> torch.Tensor:
    return lin1(x)


def c3() -> torch.Tensor:
    return c4()


def c2() -> torch.Tensor:
    return c3()


def c1() -> torch.Tensor:
    return c2()


def c0() -> torch.Tensor:
    return c1()


def test_names_are_read_four_calls_deep_not_five() -> None:
    dbg = gs.debugger(lambda: c1().sum())  # lambda → c1 → c2 → c3 → c4, which uses lin1: 4 calls deep
    assert leaf_names(dbg) == {"lin1.weight", "lin1.bias"}
    dbg.close()
    dbg = gs.debugger(lambda: c0().sum())  # 5 calls deep: past SCOPE_DEPTH
    assert leaf_names(dbg) == {"None"}
    dbg.close()


class Trainer:
    def __init__(self) -> None:
        self.model = lin1

    def step(self) -> torch.Tensor:
        return lin2(self.model(x)).sum()

    def __call__(self) -> torch.Tensor:
        return self.step()


trainer = Trainer()


def scaled(k: float) -> torch.Tensor:
    return lin2(lin1(x) * k).sum()


def test_partials_callable_objects_and_methods_of_global_objects_are_followed() -> None:
    import functools

    every = {"lin1.weight", "lin1.bias", "lin2.weight", "lin2.bias"}
    for fn, names in ((functools.partial(scaled, 2.0), every),
                      (trainer, {"self.model.weight", "self.model.bias", "lin2.weight", "lin2.bias"}),
                      (lambda: trainer.step(), {"trainer.model.weight", "trainer.model.bias", "lin2.weight",
                                                "lin2.bias"})):  # fmt: skip
        dbg = gs.debugger(fn)
        assert leaf_names(dbg) == names, (fn, leaf_names(dbg))
        dbg.close()


def test_one_level_in_reads_no_more_of_a_big_container_than_it_keeps() -> None:
    from gradsight._capture.namespace_guard import one_level_in

    read = []

    class Vocab(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def,override]
            for k in self.keys():
                read.append(k)
                yield k, self[k]

    got = one_level_in("vocab", Vocab({f"w{i}": i for i in range(10_000)}))
    assert len(got) == 256 and got[0] == ("vocab['w0']", 0)
    assert len(read) <= 257, len(read)
