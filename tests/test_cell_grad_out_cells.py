"""A %%gradsight cell's graph shows what each node produced (its ``grad_out``, DESIGN §2) as a
runnable debugger's does: every node's, checked against torch's own (``node.register_hook`` on a copy
of the computation, node by node in walk order), kept for the inspector, and none past
``options.keep_all_below`` (then only the gradients flowing in have norms). Needs the spy's
``produced`` passed through ``CaptureOptions.produced`` (cell.py) into the graph (tensors.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight._capture.walk import walk
from tests.cells import cell

SEED = """\
input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out1 = torch.sin(input1)
out2 = 2 * out1
out3 = out2 + 1
out4 = out3.sum()
"""
SHARED = """\
torch.manual_seed(0)
w = torch.randn(4, 3, requires_grad=True)
x = torch.randn(5, 4)
loss = ((torch.tanh(x @ w) @ w.t()) ** 2).mean()
"""


def torch_grad_out(shell: InteractiveShell, code: str, root: str, call: str) -> list[tuple[torch.Tensor | None, ...]]:
    """Torch's grad_out of each node (walk order) of ``root`` computed by ``code`` and differentiated
    by ``call``, in a plain cell (no gradsight)."""
    shell.run_cell(code, store_history=False)
    order = walk([shell.user_ns[root].grad_fn])[0]
    seen: dict[int, tuple[torch.Tensor | None, ...]] = {}

    def hook(i: int) -> Any:
        def record(grad_inputs: Any, grad_outputs: Any) -> None:
            seen[i] = tuple(None if g is None else g.detach().clone() for g in grad_inputs)

        return record

    handles = [n.register_hook(hook(i)) for i, n in enumerate(order)]
    shell.run_cell(call, store_history=False)
    for h in handles:
        h.remove()
    return [seen.get(i, ()) for i in range(len(order))]


def assert_grad_out_as_torch(dbg: Any, expected: list[tuple[torch.Tensor | None, ...]]) -> None:
    index = dbg._captured.index_of
    assert len(index) == len(expected)
    for node in dbg.graph.nodes:
        want = expected[index[node.id]]
        if node.leaf is not None:  # an AccumulateGrad produces nothing
            assert node.grad_out == () and want == ()
            continue
        assert len(node.grad_out) == len(want), node.id
        views = {v.key: v for v in dbg.inspect(node.id).tensors}
        for k, (s, g) in enumerate(zip(node.grad_out, want, strict=True)):
            if g is None:
                assert s is None
                continue
            assert s is not None and s.shape == tuple(g.shape), node.id
            assert s.norm == pytest.approx(float(g.norm()), rel=1e-6), node.id
            view = views[f"grad-out:{k}"]
            assert view.kept and view.summary.max == pytest.approx(float(g.max()), rel=1e-6), node.id


@pytest.mark.parametrize(
    ("code", "root", "call"),
    [
        (SEED, "out4", "out4.backward()"),
        (SHARED, "loss", "loss.backward()"),
        (SHARED, "loss", "loss.backward(retain_graph=True)\nloss.backward()"),
        (SHARED, "loss", "(gw,) = torch.autograd.grad(loss, w)"),
        (SHARED, "loss", "loss.backward(create_graph=True)"),
    ],
    ids=["seed", "shared weight", "retain_graph twice", "autograd.grad", "create_graph"],
)
@pytest.mark.filterwarnings("ignore:Using backward.. with create_graph=True:UserWarning")
def test_a_cells_grad_out_is_torchs(shell: InteractiveShell, code: str, root: str, call: str) -> None:
    expected = torch_grad_out(shell, code, root, call)
    plain = {name: shell.user_ns[name].grad for name in ("input1", "w") if name in shell.user_ns}
    dbg = cell(shell, code + call)
    assert_grad_out_as_torch(dbg, expected)
    for name, grad in plain.items():  # the oracle: .grad as in the plain cell
        mine = shell.user_ns[name].grad
        assert (mine is None) == (grad is None)
        if grad is not None:
            torch.testing.assert_close(mine.detach(), grad.detach(), rtol=0, atol=0)


def test_past_keep_all_below_a_cell_shows_no_grad_out_but_every_norm_in(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 0)
    dbg = cell(shell, SEED + "out4.backward()")
    assert all(n.executed and n.grad_out == () for n in dbg.graph.nodes)
    assert all(n.grad_in and n.grad_in[0] is not None and n.grad_in[0].norm for n in dbg.graph.nodes)
