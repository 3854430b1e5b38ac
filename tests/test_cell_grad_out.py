"""What a %%gradsight cell's backward spy records of the gradients each node produced (its
``grad_out``), checked against torch's own: ``node.register_hook`` on a copy of the same computation
(same seed), node by node in walk order. Also what the spy must not do: change any gradient (the
oracle: ``.grad`` and second derivatives as without it), leave a hook behind, or raise into the
user's backward — and the budget rule it shares with runnable runs (``options.keep_all_below``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import gradsight as gs
from gradsight._capture import hooks
from gradsight._capture.spy import BackwardSpy
from gradsight._capture.spy_watch import fits_below
from gradsight._capture.store import TensorStore
from gradsight._capture.walk import short_name, walk

Grads = dict[int, tuple[torch.Tensor | None, ...]]
Make = Callable[[], tuple[torch.Tensor, list[torch.Tensor]]]  # a computation: its root and its leaves
Run = Callable[[torch.Tensor, list[torch.Tensor]], Any]  # what the cell does with them: a backward call


def seed_graph() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The seed's 5-node graph: sin, times 2, plus 1, sum."""
    input1 = torch.linspace(0.0, 2.0 * torch.pi, steps=25, requires_grad=True)
    return (2 * torch.sin(input1) + 1).sum(), [input1]


def shared_weight() -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A weight used twice (its AccumulateGrad gets the sum of two nodes' gradients) and a tanh."""
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 4)
    h = torch.tanh(x @ w)
    return ((h @ w.t()) ** 2).mean(), [w]


GRAPHS = {"seed": seed_graph, "shared weight": shared_weight}


def torch_produced(make: Make, run: Run) -> tuple[Grads, list[torch.Tensor]]:
    """Torch's own grad_out per walk index (post-hooks of ours on a fresh copy), and the leaves."""
    root, leaves = make()
    order = walk([root.grad_fn])[0]
    seen: Grads = {}

    def hook(i: int) -> Any:
        def record(grad_inputs: Any, grad_outputs: Any) -> None:
            seen[i] = tuple(None if g is None else g.detach().clone() for g in grad_inputs)

        return record

    handles = [n.register_hook(hook(i)) for i, n in enumerate(order) if short_name(n) != hooks.ACCUMULATE_GRAD]
    run(root, leaves)
    for h in handles:
        h.remove()
    return seen, leaves


def spied(make: Make, run: Run) -> tuple[BackwardSpy, list[Any], list[torch.Tensor], Any]:
    """The same computation with the cell's spy installed: the spy, the walk order, the leaves, ``run``'s result."""
    spy = BackwardSpy(2**30)
    with spy.installed():
        root, leaves = make()
        order = walk([root.grad_fn])[0]
        result = run(root, leaves)
    return spy, order, leaves, result


def assert_produced_as_torch(spy: BackwardSpy, order: list[Any], expected: Grads) -> None:
    nodes = set(order)  # a later call's graph (a grad of the gradients) is not this one's
    produced = {n: seen for n, seen in spy.produced.items() if n in nodes}
    assert expected and {order.index(n) for n in produced} == set(expected)
    for i, grads in expected.items():
        seen = produced[order[i]]
        assert seen.tensors is not None and len(seen.metas) == len(grads) == len(seen.tensors), order[i]
        for meta, kept, g in zip(seen.metas, seen.tensors, grads, strict=True):
            if g is None:
                assert meta is None and kept is None
                continue
            assert meta is not None and meta[0] == tuple(g.shape)
            assert float(meta[4]) == pytest.approx(float(g.norm()), rel=1e-6), short_name(order[i])
            assert kept is not None
            torch.testing.assert_close(kept.detach(), g)


def backward(root: torch.Tensor, leaves: list[torch.Tensor]) -> None:
    root.backward()


@pytest.mark.parametrize("graph", GRAPHS)
def test_a_backward_records_what_every_node_produced_as_torch_sees_it(graph: str) -> None:
    expected, plain_leaves = torch_produced(GRAPHS[graph], backward)
    spy, order, leaves, _ = spied(GRAPHS[graph], backward)
    assert_produced_as_torch(spy, order, expected)
    for leaf, plain in zip(leaves, plain_leaves, strict=True):  # the oracle: .grad as without gradsight
        assert leaf.grad is not None and plain.grad is not None
        torch.testing.assert_close(leaf.grad, plain.grad, rtol=0, atol=0)
    assert not spy.errors


def test_two_backward_calls_through_a_retained_graph_show_the_last_and_add_up_as_torchs() -> None:
    def twice(root: torch.Tensor, leaves: list[torch.Tensor]) -> None:
        root.backward(retain_graph=True)
        root.backward()

    expected, plain_leaves = torch_produced(shared_weight, twice)
    spy, order, leaves, _ = spied(shared_weight, twice)
    assert len(spy._calls) == 2 and all(call.produced for call in spy._calls)
    assert_produced_as_torch(spy, order, expected)  # the second call's, equal to the first's
    assert spy._calls[0].produced is not None
    assert all(seen.tensors is None for seen in spy._calls[0].produced.values())  # only the last call's held
    torch.testing.assert_close(leaves[0].grad, plain_leaves[0].grad, rtol=0, atol=0)
    assert [leaf for leaf, _ in spy.accumulated()] == leaves  # .grad holds two calls


def test_autograd_grad_records_what_reached_the_inputs_and_leaves_grad_alone() -> None:
    def grad(root: torch.Tensor, leaves: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(root, leaves)

    expected, _ = torch_produced(shared_weight, grad)
    spy, order, leaves, (gw,) = spied(shared_weight, grad)
    assert_produced_as_torch(spy, order, expected)
    assert leaves[0].grad is None
    leaf = next(n for n in order if short_name(n) == hooks.ACCUMULATE_GRAD)
    assert float(spy.observed[leaf].metas[0][4]) == pytest.approx(float(gw.norm()))
    # what the two consumers of w produced adds up to what autograd.grad returned for it
    produced = spy.produced
    into_w = [
        g
        for n in order
        if n in produced
        for (child, _), g in zip(n.next_functions, produced[n].tensors or (), strict=True)
        if child is leaf and g is not None
    ]
    assert len(into_w) == 2
    torch.testing.assert_close(into_w[0] + into_w[1], gw)


@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True:UserWarning")  # torch's, on .grad cycles
def test_create_graph_keeps_second_derivatives_as_torchs() -> None:
    def create(root: torch.Tensor, leaves: list[torch.Tensor]) -> None:
        root.backward(create_graph=True)

    expected, plain_leaves = torch_produced(shared_weight, create)
    spy, order, leaves, _ = spied(shared_weight, create)
    assert_produced_as_torch(spy, order, expected)
    assert not spy.errors
    for w in (leaves[0], plain_leaves[0]):  # a second derivative through the gradients, as without gradsight
        assert w.grad is not None and w.grad.grad_fn is not None
    (ggw,) = torch.autograd.grad((leaves[0].grad ** 2).sum(), leaves)  # type: ignore[operator]
    (plain_ggw,) = torch.autograd.grad((plain_leaves[0].grad ** 2).sum(), plain_leaves)  # type: ignore[operator]
    torch.testing.assert_close(ggw, plain_ggw, rtol=0, atol=0)


def test_past_keep_all_below_norms_flow_in_but_nothing_produced_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)  # as if the graph were big, as in a runnable run
    spy, order, _, _ = spied(seed_graph, backward)
    assert spy.produced == {}
    assert len(spy.observed) == len(order) and all(seen.tensors is None for seen in spy.observed.values())
    assert float(spy.observed[order[0]].metas[0][4]) == pytest.approx(1.0)


def test_the_saved_tensors_the_spy_kept_count_in_keep_all_below(monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = seed_graph()
    order = walk([root.grad_fn])[0]
    is_leaf = [short_name(n) == hooks.ACCUMULATE_GRAD for n in order]
    # 1 (the sum's) + 3 * 25 (add, mul, sin) + 25 (the leaf) float32 gradients
    assert fits_below(order, is_leaf, 101 * 4) and not fits_below(order, is_leaf, 101 * 4 - 1)
    monkeypatch.setattr(gs.options, "keep_all_below", 101 * 4)  # the gradients fit, with the saved input1 not
    spy, _, _, _ = spied(seed_graph, backward)
    assert spy.presaved and spy.produced == {}


def test_a_hook_that_fails_never_reaches_the_users_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("gradsight bug")

    _, plain_leaves = torch_produced(shared_weight, backward)
    monkeypatch.setattr(TensorStore, "offer", broken)  # every post-hook (and kept prehook) fails
    spy, _, leaves, _ = spied(shared_weight, backward)
    torch.testing.assert_close(leaves[0].grad, plain_leaves[0].grad, rtol=0, atol=0)
    assert spy.errors and all("gradsight bug" in e for e in spy.errors)


def test_no_hook_outlives_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def retained(root: torch.Tensor, leaves: list[torch.Tensor]) -> torch.Tensor:
        root.backward(retain_graph=True)
        return root

    spy, _, leaves, root = spied(shared_weight, retained)
    calls: list[str] = []
    offer, meta = TensorStore.offer, hooks.grad_meta

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(TensorStore, "offer", counted("offer", offer))
    monkeypatch.setattr(hooks, "grad_meta", counted("meta", meta))
    leaves[0].grad = None
    root.backward()  # the same graph again, after the spy: nothing of gradsight runs
    assert calls == [] and leaves[0]._backward_hooks is None
    assert len(spy._calls) == 1
