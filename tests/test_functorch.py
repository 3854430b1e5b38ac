"""Backward under functorch transforms (vmap, is_grads_batched, torch.func.hessian): their tensors
have no storage to count or keep and no norm outside the transform; gradsight must not fail on them."""

from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs

BODIES = {
    "is_grads_batched": "y = x.sin() * 2\n(jac,) = torch.autograd.grad(y, x, torch.eye(3), is_grads_batched=True)\n"
    "loss = y.sum()",
    "vmap of autograd.grad": "y = x.sin() * 2\n"
    "jac = vmap(lambda v: torch.autograd.grad(y, x, v, retain_graph=True)[0])(torch.eye(3))\nloss = y.sum()",
    "hessian, then backward": "H = hessian(lambda a: (a.sin() ** 2).sum())(x)\nloss = H.sum()\nloss.backward()",
}


@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_cell_differentiating_under_functorch_runs(shell: InteractiveShell, body: str) -> None:
    shell.run_cell("import torch\nfrom torch.func import vmap, hessian\nx = torch.randn(3, requires_grad=True)")
    result = shell.run_cell("%%gradsight\n" + body)
    assert result.error_in_exec is None, result.error_in_exec
    dbg = result.result
    assert isinstance(dbg, gs.Debugger) and len(dbg.graph) > 0
    assert not dbg.graph.run.errors, dbg.graph.run.errors
    dbg.close()


def test_a_runnable_function_taking_per_sample_gradients_runs() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)

    def loss() -> torch.Tensor:
        y = (w * torch.arange(3.0)).sin()
        (jac,) = torch.autograd.grad(y, w, torch.eye(3), is_grads_batched=True, create_graph=True)
        return y.sum() + jac.pow(2).sum()

    expected = torch.autograd.grad(loss(), w)[0]
    dbg = gs.debugger(loss)
    assert dbg.status == "ready", dbg.error
    leaf = dbg.graph.node("leaf:w") if "leaf:w" in dbg.graph else None
    assert leaf is not None and leaf.grad_norm == pytest.approx(float(expected.norm()), rel=1e-5)
    dbg.close()
