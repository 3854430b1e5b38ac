"""A reentrant checkpoint (``use_reentrant=True``) whose input requires grad: the parameters inside it
get their ``.grad`` from the region's own backward. Neither a ``%%gradsight`` cell's ``graph.missing``
nor ``why()`` may say they got nothing, and a taint trace through the region whose output does have
a graph must not blame the region's no_grad ("None does here")."""

from __future__ import annotations

import pytest
import torch
import torch.utils.checkpoint as cp
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


class _Checkpointed(nn.Module):
    def __init__(self, detach_after: bool = False) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.b = nn.Linear(8, 1)
        self.detach_after = detach_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = cp.checkpoint(self.a, x, use_reentrant=True)
        if self.detach_after:
            h = h.detach()  # the cut
        return self.b(h)


def _torch_grad(model: _Checkpointed, x: torch.Tensor) -> float:
    import copy

    ref = copy.deepcopy(model)
    ref(x.detach().clone().requires_grad_()).sum().backward()
    grad = ref.a[0].weight.grad
    assert grad is not None
    return float(grad.norm())


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad=True")  # the requires_grad=False re-run
def test_a_cells_checkpointed_parameters_are_not_missing_and_why_says_what_they_got(shell: InteractiveShell) -> None:
    torch.manual_seed(0)
    m, x = _Checkpointed(), torch.randn(4, 8, requires_grad=True)
    expected = _torch_grad(m, x)
    shell.user_ns.update(m=m, x=x)
    dbg = shell.run_cell("%%gradsight\nloss = m(x).sum()\nloss.backward()", store_history=False).result
    assert m.a[0].weight.grad is not None
    assert not {w.name for w in dbg.graph.missing} & {"m.a.0.weight", "m.a.0.bias"}, dbg.graph.missing
    why = dbg.why("m.a.0.weight")
    assert "inside a reentrant checkpoint region" in why.message and "None does here" not in why.message, why
    assert f"norm {expected:.4g}" in why.message

    user_grad = m.a[0].weight.grad.clone()
    dbg.rerun()  # the re-run's own gradient, not added to the first run's
    assert not {w.name for w in dbg.graph.missing} & {"m.a.0.weight", "m.a.0.bias"}, dbg.graph.missing
    assert f"norm {expected:.4g}" in dbg.why("m.a.0.weight").message
    assert torch.equal(m.a[0].weight.grad, user_grad)

    dbg.rerun(requires_grad={"x": False})  # now the region's output has no graph: it is missing
    assert {"m.a.0.weight", "m.a.0.bias"} <= {w.name for w in dbg.graph.missing}
    assert "None does here" in dbg.why("m.a.0.weight").message


def test_a_cut_after_a_checkpoint_whose_input_requires_grad_is_named_not_the_regions_no_grad() -> None:
    torch.manual_seed(0)
    model = _Checkpointed(detach_after=True)
    dbg = gs.debugger(model, inputs=torch.randn(4, 8, requires_grad=True), loss=lambda o: o.sum())
    why = dbg.why("a.0.weight")
    assert why.reason == "detach" and "None does here" not in why.message, why
    assert why.source is not None and "# the cut" in why.source


class _WithUnused(_Checkpointed):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(8, 8)  # never called in this forward (a pooler)


def test_leaves_whose_grad_changed_outside_the_region_are_not_said_to_get_it_inside(shell: InteractiveShell) -> None:
    torch.manual_seed(0)
    m, x, other = _WithUnused(), torch.randn(4, 8, requires_grad=True), torch.ones(3, requires_grad=True)
    m.unused.weight.grad = torch.full((8, 8), 5.0)  # an earlier step's gradient, which clipping rescales
    shell.user_ns.update(m=m, x=x, other=other)
    dbg = shell.run_cell(
        "%%gradsight\nloss = m(x).sum()\nloss.backward()\ntorch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)\n"
        "(other * 2).sum().backward()  # another backward, through no region",
        store_history=False,
    ).result
    assert "inside a reentrant checkpoint region" in dbg.why("m.a.0.weight").message
    for name in ("m.unused.weight", "other"):
        assert "inside a reentrant checkpoint region" not in dbg.why(name).message, name
    assert "m.unused.weight" in {w.name for w in dbg.graph.missing}
    assert not {w.name for w in dbg.graph.missing} & {"m.a.0.weight", "m.a.0.bias"}, dbg.graph.missing
