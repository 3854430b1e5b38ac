"""What-if re-runs of %%gradsight cells leave every ``.grad`` their backward could touch as it was
(sparse ones, non-leaves that retain their gradient, leaves reached only through the graph), start
each ``.grad`` where the first run's backward found it however the cell reached the parameters, and
keep their copies inside the memory budget."""

from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def _grads(graph: gs.Graph) -> dict[str | None, float | None]:
    return {n.leaf.name: n.leaf.grad.norm if n.leaf.grad else None for n in graph.leaves if n.leaf is not None}


def test_a_rerun_leaves_a_sparse_grad_as_it_was(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nemb = nn.Embedding(10, 3, sparse=True)\nidx = torch.tensor([1, 2, 2, 5])\n"
                   "emb(idx).sum().backward()")  # fmt: skip
    dbg = shell.run_cell("%%gradsight\nloss = emb(idx).pow(2).sum()\nloss.backward()").result
    grad = shell.user_ns["emb"].weight.grad
    dense = grad.to_dense().clone()
    first = _grads(dbg.graph)
    assert _grads(dbg.rerun()) == pytest.approx(first)
    dbg.close()
    assert shell.user_ns["emb"].weight.grad is grad
    assert torch.equal(grad.to_dense(), dense)


def test_a_rerun_through_a_non_leaf_that_retains_its_grad_leaves_both_grads(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nw = torch.randn(3, requires_grad=True)\nh = w * 3\nh.retain_grad()")
    dbg = shell.run_cell("%%gradsight\nloss = (h * 2).sum()\nloss.backward(retain_graph=True)").result
    ns = shell.user_ns
    h_grad, w_grad = ns["h"].grad, ns["w"].grad
    assert h_grad.tolist() == [2.0] * 3 and w_grad.tolist() == [6.0] * 3
    dbg.rerun()
    dbg.close()
    assert ns["h"].grad is h_grad and ns["w"].grad is w_grad
    assert h_grad.tolist() == [2.0] * 3 and w_grad.tolist() == [6.0] * 3


@pytest.mark.parametrize("cell", ["loss = helper()\nloss.backward()", "loss = (params[0] * x).sum()\nloss.backward()",
                                  "loss = tr.model(x).sum()\nloss.backward()"])  # fmt: skip
def test_a_rerun_starts_grad_where_the_first_run_did_however_the_cell_reaches_it(
    shell: InteractiveShell, cell: str
) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\nx = torch.randn(8, 4)\nw = torch.randn(4, requires_grad=True)\n"
        "params = [w]\nclass T: pass\ntr = T()\ntr.model = nn.Linear(4, 1)\ndef helper(): return model(x).pow(2).mean()"
    )
    dbg = shell.run_cell("%%gradsight\n" + cell).result
    first = _grads(dbg.graph)
    graph = dbg.rerun()
    assert _grads(graph) == pytest.approx(first)
    assert not [n for n in graph.notes if ".grad" in n], graph.notes


def test_a_rerun_of_a_create_graph_backward_starts_from_what_grad_held(
    shell: InteractiveShell, recwarn: pytest.WarningsRecorder
) -> None:
    shell.run_cell("w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)\nw.grad = torch.ones(3)")
    dbg = shell.run_cell("%%gradsight\nloss = (w ** 3).sum()\nloss.backward(create_graph=True)").result
    user = shell.user_ns["w"].grad
    expected = float((torch.ones(3) + 3 * torch.tensor([1.0, 2.0, 3.0]) ** 2).norm())
    assert _grads(dbg.graph)["w"] == pytest.approx(expected)
    graph = dbg.rerun()
    assert _grads(graph)["w"] == pytest.approx(expected)  # not the first run's result added again
    assert shell.user_ns["w"].grad is user
    assert not [w for w in recwarn if "to a scalar" in str(w.message)]  # no norm of a .grad requiring grad


def test_a_grad_past_the_budget_is_not_copied_and_the_rerun_says_it_starts_from_none(shell: InteractiveShell) -> None:
    shell.run_cell("bw = torch.full((1000,), 2.0, requires_grad=True)\nbw.grad = torch.ones(1000)")
    budget = gs.options.memory_budget
    gs.options.memory_budget = 1000  # smaller than bw.grad (4000 bytes)
    try:
        dbg = shell.run_cell("%%gradsight\nloss = (bw * bw).sum()\nloss.backward()").result
    finally:
        gs.options.memory_budget = budget
    assert dbg._target.first_grads.kept_bytes == 0
    graph = dbg.rerun()
    assert _grads(graph)["bw"] == pytest.approx(float(torch.full((1000,), 4.0).norm()))  # its own gradient
    assert any("starts it from None" in n and "bw" in n for n in graph.notes), graph.notes
    assert torch.equal(shell.user_ns["bw"].grad, torch.full((1000,), 5.0))


def test_copies_count_in_the_budget_and_a_cell_that_clears_grad_first_copies_nothing(shell: InteractiveShell) -> None:
    shell.run_cell("W = torch.randn(100, 100, requires_grad=True)\n(W * 2).sum().backward()\n"
                   "opt = torch.optim.SGD([W], lr=0.1)")  # fmt: skip
    dbg = shell.run_cell("%%gradsight\nloss = (W * 3).sum()\nloss.backward()").result
    assert dbg._target.first_grads.kept_bytes == 40000
    assert dbg.graph.run.kept_bytes >= 40000
    cleared = shell.run_cell("%%gradsight\nopt.zero_grad(set_to_none=True)\nloss = (W * 3).sum()\nloss.backward()")
    assert cleared.result._target.first_grads.kept_bytes == 0


def test_a_rerun_that_makes_an_input_require_grad_leaves_its_grad_none(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.ones(3, requires_grad=True)\nx = torch.full((3,), 2.0)")
    dbg = shell.run_cell("%%gradsight\nloss = (w * x).sum()\nloss.backward()").result
    graph = dbg.rerun(requires_grad={"x": True})
    assert _grads(graph)["x"] == pytest.approx(float(torch.ones(3).norm()))  # the re-run's own gradient
    assert shell.user_ns["x"].grad is None and not shell.user_ns["x"].requires_grad
    assert torch.equal(shell.user_ns["w"].grad, torch.full((3,), 2.0))


def test_grads_are_kept_when_the_saved_values_cannot_be_read(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradsight._capture import spy

    def unreadable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unreadable")

    monkeypatch.setattr(spy, "_keeper", unreadable)  # the spy's reading of saved values fails
    shell.run_cell("w = torch.ones(3, requires_grad=True)\nh = w * 3\nh.retain_grad()")
    dbg = shell.run_cell("%%gradsight\nloss = (h * 2).sum()\nloss.backward(retain_graph=True)").result
    dbg.rerun()
    assert shell.user_ns["w"].grad.tolist() == [6.0] * 3
