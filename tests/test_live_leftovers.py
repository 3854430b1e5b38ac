"""What a live session leaves behind: a captured forward interrupted by Ctrl-C (a KeyboardInterrupt
skips the model's always_call end hook) ends with its IPython cell, not at the model's next call;
and a parameter replaced under its name starts a ``.grad`` history of its own."""

from __future__ import annotations

import gc

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch.nn.modules import module as torch_module

import gradsight as gs
from tests.run_zoo import MLP

pytestmark = pytest.mark.usefixtures("every_step")  # live debuggers capture every step (conftest)

INTERRUPT = """
h = model.layer1.register_forward_hook(lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
try:
    model(x)
finally:
    h.remove()
"""


def left_on() -> tuple[int, int, int]:
    """The torch-function mode stack's depth and the global module hooks installed."""
    return (torch._C._len_torch_function_stack(), len(torch_module._global_forward_hooks),
            len(torch_module._global_forward_pre_hooks))  # fmt: skip


def test_an_interrupted_captured_forward_ends_with_its_cell(shell: InteractiveShell) -> None:
    """A Ctrl-C inside a captured forward left gradsight's TorchFunctionMode on the mode stack and its
    global module hooks on (every unrelated model 2-4x slower) in every later cell, until the followed
    model's next call or close()."""
    torch.manual_seed(0)
    before = left_on()
    shell.user_ns.update(model=MLP(), x=torch.randn(2, 8))
    shell.run_cell("dbg = __import__('gradsight').debugger(model)\nmodel(x).sum().backward()")
    dbg = shell.user_ns["dbg"]
    assert dbg.graph.run.step == 1
    result = shell.run_cell(INTERRUPT)
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    shell.run_cell("seen = (torch._C._len_torch_function_stack(),)")
    assert shell.user_ns["seen"] == (before[0],) and left_on() == before
    shell.run_cell("model(x).sum().backward()")  # the next step is captured and shown as before
    assert dbg.graph.run.step == 2 and left_on() == before
    assert dbg.graph.node("leaf:layer1.weight").grad_norm is not None
    dbg.close()
    assert left_on() == before


def test_outside_ipython_the_next_call_still_ends_an_interrupted_capture() -> None:
    """Outside IPython nothing changes: the script's own next call ends an interrupted capture."""
    torch.manual_seed(0)
    before = left_on()
    model, x = MLP(), torch.randn(2, 8)
    dbg = gs.debugger(model)
    h = model.layer1.register_forward_hook(lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        model(x)
    h.remove()
    model(x).sum().backward()
    assert left_on() == before and dbg.graph.run.step == 1
    dbg.close()


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)))


@pytest.mark.parametrize("keep_old", [True, False])
def test_a_replaced_parameter_starts_a_grad_history_of_its_own(keep_old: bool) -> None:
    """``model.head = nn.Linear(8, 3)`` at step 3 (a new task): the history of "head.weight" mixed the
    old parameter's norms (steps 1-2) with the new one's under one name. It restarts, and says so.
    ``keep_old=False``: the old head freed, its id may be the new one's — the weak reference tells."""
    torch.manual_seed(0)
    model = Net()
    dbg = gs.debugger(model)
    old = None
    norms = []
    for i in range(4):
        if i == 2:
            old, model.head = model.head, torch.nn.Linear(8, 3)
            if not keep_old:
                old = None
                gc.collect()
        model.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        norms.append(float(model.head.weight.grad.norm()))  # type: ignore[union-attr]
    history = dbg.inspect("leaf:head.weight").history
    assert [h.step for h in history] == [3, 4]
    assert [h.grad_norm for h in history] == pytest.approx(norms[2:])
    assert [h.step for h in dbg.inspect("leaf:body.weight").history] == [1, 2, 3, 4]  # the same tensor
    note = "head.weight is a new tensor since step 3"
    assert any(note in n for n in dbg.graph.notes)
    assert not any("body.weight is a new tensor" in n for n in dbg.graph.notes)
    dbg.close()
    del old
