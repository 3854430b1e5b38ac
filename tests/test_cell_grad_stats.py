"""A small ``%%gradsight`` cell's gradient summaries carry every statistic at once, as a runnable
run's do (``store.EAGER_NODES``, ``TensorSummary``'s promise): taken after the watched backward call
returned, from the tensors its hooks kept (``_capture/observed.py``), never inside a hook. The oracle
is the runnable debugger of the same computation, node by node, and torch's own gradients; a
gradient the user changed in place after the call keeps the hook's norm and no statistics of values
that never flowed."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight.graph import Graph, Node, TensorSummary
from tests.cells import cell

STATS = ("min", "max", "mean", "std", "norm", "nan_count", "inf_count")

SEED = """\
input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out3 = 2 * torch.sin(input1) + 1
out3.sum().backward()
"""

SHARED = """\
torch.manual_seed(0)
w = torch.randn(4, 3, requires_grad=True)
x = torch.randn(5, 4)
loss = ((torch.tanh(x @ w) @ w.t()) ** 2).mean()
loss.backward()
"""


def _seed() -> Callable[[], torch.Tensor]:
    input1 = torch.linspace(0.0, 2.0 * math.pi, steps=25, requires_grad=True)
    return lambda: (2 * torch.sin(input1) + 1).sum()  # its leaf named as the cell's: input1


def _shared() -> Callable[[], torch.Tensor]:
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    x = torch.randn(5, 4)
    return lambda: ((torch.tanh(x @ w) @ w.t()) ** 2).mean()


def _node(graph: Graph, node_id: str) -> Node:
    return next(n for n in graph.nodes if n.id == node_id)


def _same(a: TensorSummary, b: TensorSummary) -> bool:
    return all(getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-6, abs=1e-12) for f in STATS)


@pytest.mark.parametrize(("body", "make"), [(SEED, _seed), (SHARED, _shared)], ids=["seed", "shared weight"])
def test_a_small_cells_gradients_have_every_statistic_of_the_runnable_run(
    shell: InteractiveShell, body: str, make: Callable[[], Callable[[], torch.Tensor]]
) -> None:
    graph: Graph = cell(shell, body).graph
    runnable = {n.id: n for n in gs.debugger(make()).graph.nodes}
    compared = 0
    for node in graph.nodes:
        other = runnable[node.id]  # the cell leaves out what it bound no name to (the seed's sum)
        for mine, theirs in zip(node.grad_in + node.grad_out, other.grad_in + other.grad_out, strict=True):
            if theirs is None:
                assert mine is None, node.id
                continue
            assert mine is not None and theirs.min is not None, node.id
            assert _same(mine, theirs), (node.id, mine, theirs)
            compared += 1
    assert compared >= len(graph.nodes)  # every node's gradient in, the leaves' included


def test_the_seed_cells_sin_node_gets_twos_and_its_leaf_twice_the_cosine(shell: InteractiveShell) -> None:
    graph = cell(shell, SEED).graph
    sin = graph.find("SinBackward0")[0].grad_in[0]
    assert sin is not None and (sin.min, sin.max, sin.mean, sin.std) == (2.0, 2.0, 2.0, 0.0)
    leaf = _node(graph, "leaf:input1").grad_in[0]
    expected = 2 * torch.cos(torch.linspace(0.0, 2.0 * math.pi, steps=25))
    assert leaf is not None and leaf.min == pytest.approx(float(expected.min()), abs=1e-6)
    assert leaf.max == pytest.approx(float(expected.max()), abs=1e-6)
    assert leaf.mean == pytest.approx(float(expected.double().mean()), abs=1e-6)


def test_a_gradient_changed_in_place_after_the_call_keeps_the_norm_that_flowed(shell: InteractiveShell) -> None:
    # autograd.grad returns w's gradient itself: the tensor MulBackward0 produced, which the spy kept
    graph = cell(shell, "w = torch.ones(3, requires_grad=True)\ny = (2 * w).sin()\n"
                        "g, = torch.autograd.grad(y.sum(), w)\ng.mul_(100)\n").graph  # fmt: skip
    flowed = 2 * torch.cos(torch.full((3,), 2.0))
    produced = graph.find("MulBackward0")[0].grad_out[0]
    assert produced is not None and produced.norm == pytest.approx(float(flowed.norm()), rel=1e-6)
    assert produced.max is None  # not g's values now (100x): no statistics rather than wrong ones
    leaf = _node(graph, "leaf:w").grad_in[0]
    assert leaf is not None and leaf.norm == pytest.approx(float(flowed.norm()), rel=1e-6) and leaf.max is None
    into_mul = graph.find("MulBackward0")[0].grad_in[0]  # unchanged: its statistics are there
    assert into_mul is not None and into_mul.max == pytest.approx(float(torch.cos(torch.tensor(2.0))), rel=1e-6)


def test_a_cell_past_eager_nodes_takes_no_statistics_as_a_runnable_run(shell: InteractiveShell) -> None:
    body = "a = torch.ones(3, requires_grad=True)\nh = a\nfor _ in range(150):\n    h = h * 1.0\nloss = h.sum()\n"
    graph = cell(shell, body + "loss.backward()\n").graph
    assert len(graph.nodes) > 128  # store.EAGER_NODES
    grads = [s for n in graph.nodes for s in n.grad_in if s is not None]
    assert grads and all(s.norm is not None and s.min is None for s in grads)
