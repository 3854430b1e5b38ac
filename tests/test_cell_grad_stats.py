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


# Hooks on a multiplier (gradient ascent on a Lagrange multiplier: lam.register_hook(lambda g: -g)) that
# keep the norm: the sum of what the leaf's consumers passed it is not what reached lam.grad. Each as
# the cell's source and as what it does (the oracle: lam.grad, lam * c's gradient [1, 2, 3] hooked).
NORM_KEEPING_HOOKS: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "negate": ("lambda g: -g", lambda g: -g),
    "permute": ("lambda g: g.flip(0)", lambda g: g.flip(0)),  # every statistic the same: can't go wrong
    "rotate": (
        "lambda g: torch.stack([0.6 * g[0] - 0.8 * g[1], 0.8 * g[0] + 0.6 * g[1], g[2]])",
        lambda g: torch.stack([0.6 * g[0] - 0.8 * g[1], 0.8 * g[0] + 0.6 * g[1], g[2]]),
    ),
}


@pytest.mark.parametrize("name", NORM_KEEPING_HOOKS)
def test_a_leaf_hook_that_keeps_the_norm_shows_no_statistics_of_what_the_hook_replaced(
    shell: InteractiveShell, name: str
) -> None:
    source, hook = NORM_KEEPING_HOOKS[name]
    body = f"lam = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)\nlam.register_hook({source})\n"
    graph = cell(shell, body + "c = torch.tensor([1.0, 2.0, 3.0])\nloss = (lam * c).sum()\nloss.backward()\n").graph
    mine = _node(graph, "leaf:lam").grad_in[0]
    reached = hook(torch.tensor([1.0, 2.0, 3.0]))
    assert mine is not None and mine.norm == pytest.approx(math.sqrt(14.0), rel=1e-6)
    if mine.min is not None:  # none rather than the unhooked sum's [1, 2, 3]
        expected = (reached.min(), reached.max(), reached.mean(), reached.std())
        assert (mine.min, mine.max, mine.mean, mine.std) == pytest.approx([float(v) for v in expected], abs=1e-6)


def test_a_leaf_hook_that_only_looks_keeps_the_leafs_statistics(shell: InteractiveShell) -> None:
    body = "seen = []\nlam = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)\nlam.register_hook(seen.append)\n"
    graph = cell(shell, body + "loss = (lam * torch.tensor([1.0, 2.0, 3.0])).sum()\nloss.backward()\n").graph
    leaf = _node(graph, "leaf:lam").grad_in[0]
    assert leaf is not None and (leaf.min, leaf.max, leaf.mean) == (1.0, 3.0, 2.0)  # lam.grad: [1, 2, 3]


CROSS_CALL = """\
class Both(torch.autograd.Function):  # its backward returns both gradients, needed or not
    @staticmethod
    def forward(ctx, x, lam):
        ctx.save_for_backward(x, lam)
        return x * lam
    @staticmethod
    def backward(ctx, g):
        x, lam = ctx.saved_tensors
        return g * lam, g * x
x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
lam = torch.ones(3, requires_grad=True)
y = Both.apply(x, lam)
y.backward(torch.tensor([1.0, 2.0, 3.0]), retain_graph=True)
gx, = torch.autograd.grad(y, x, torch.tensor([-1.0, -2.0, -3.0]))
"""


def test_a_leaf_that_did_not_run_in_the_last_call_gets_no_statistics_of_its_gradients(
    shell: InteractiveShell,
) -> None:
    # lam ran in the first call only (gradient [1, 4, 9]); Both passed it [-1, -4, -9] in the second,
    # which torch.autograd.grad dropped: the same norm, other values
    leaf = _node(cell(shell, CROSS_CALL).graph, "leaf:lam").grad_in[0]
    assert leaf is not None and leaf.norm == pytest.approx(math.sqrt(98.0), rel=1e-6)
    assert leaf.min is None or (leaf.min, leaf.max) == (1.0, 9.0), leaf
