"""%%gradsight cells as faithful as plain cells and runnable debuggers: tracebacks name the cell's
execution count, ops carry their source line (``In[4]:2``) and the module whose forward made them,
a leaf's ``.grad`` summed over several backward calls says so, and saved values a module's backward
hook never had are not reported as freed."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch.overrides import TorchFunctionMode

import gradsight as gs
from gradsight._capture import source
from gradsight.graph import Unavailable
from tests.cells import TINY_MODEL, cell, shown

# -- tracebacks and compilation as in a plain cell -------------------------------------------------------


def test_a_failing_cells_traceback_names_its_execution_count(shell: InteractiveShell, capsys: Any) -> None:
    shell.run_cell("a = 1", store_history=True)
    shell.run_cell("b = 2", store_history=True)
    count = shell.execution_count  # the number the next cell gets
    result = shell.run_cell(
        "%%gradsight\nx = torch.ones(2, requires_grad=True)\nraise ValueError('boom')", store_history=True
    )
    assert isinstance(result.error_in_exec, ValueError)
    cells = [line for line in shown(capsys).splitlines() if line.startswith("Cell In[")]
    # not In[0]; the magic's own line (1) and the line that raised (3: lines as the notebook numbers them)
    assert cells == [f"Cell In[{count}], line 1", f"Cell In[{count}], line 3"], cells


def test_an_op_that_raises_shows_the_users_line_last(shell: InteractiveShell, capsys: Any) -> None:
    result = shell.run_cell("%%gradsight\nx = torch.ones(2, requires_grad=True)\ny = x @ torch.ones(3)")
    assert isinstance(result.error_in_exec, RuntimeError)
    out = shown(capsys)
    last = out[out.rindex("Cell In[") :]
    assert "----> 3 y = x @ torch.ones(3)" in last and "source.py" not in out and "File " not in last


def test_the_cell_compiles_with_the_sessions_futures_not_gradsights(shell: InteractiveShell) -> None:
    # gradsight's modules use `from __future__ import annotations`; a plain cell does not
    cell(shell, "def f(a: int) -> None:\n    pass\nw = torch.ones(2, requires_grad=True)\nloss = (w * 2).sum()")
    assert shell.user_ns["f"].__annotations__ == {"a": int, "return": None}


# -- source lines ---------------------------------------------------------------------------------------


def test_a_cells_ops_carry_their_source_line_named_by_execution_count(shell: InteractiveShell) -> None:
    model_cell = shell.execution_count
    shell.run_cell(TINY_MODEL, store_history=True)
    body_cell = shell.execution_count
    dbg = cell(shell, "w = torch.ones(2, requires_grad=True)\nout = model(x)\nloss = (out * w).sum()\nloss.backward()")
    graph = dbg.graph
    assert graph.find("SumBackward0")[0].source == f"In[{body_cell}]:4  loss = (out * w).sum()"
    assert graph.find("TanhBackward0")[0].source == f"In[{model_cell}]:9  return torch.tanh(self.layer2(h)) * 2"
    assert graph.find("ReluBackward0")[0].source == f"In[{model_cell}]:8  h = self.relu(self.layer1(x))"
    # a runnable debugger made in a numbered cell reads the same way
    shell.run_cell(
        "import gradsight\ndbg = gradsight.debugger(model, inputs=x, loss=lambda o: o.sum())", store_history=True
    )
    runnable = shell.user_ns["dbg"].graph
    assert runnable.find("TanhBackward0")[0].source == f"In[{model_cell}]:9  return torch.tanh(self.layer2(h)) * 2"


def test_a_warning_inside_an_op_names_the_cells_line_and_the_cells_filters_stay(shell: InteractiveShell) -> None:
    body = "x = torch.ones(2, requires_grad=True)\ny = x * 2\ny.grad\n"  # a non-leaf's .grad: torch warns in C++
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dbg = cell(shell, body)
        assert isinstance(dbg, gs.Debugger)
        (warned,) = [w for w in caught if "not a leaf Tensor" in str(w.message)]
        assert warned.lineno == 4 and "source.py" not in warned.filename  # %%gradsight is line 1
        assert dbg.graph.find("MulBackward0")[0].source.endswith(":3  y = x * 2")
        # warnings the cell turns into errors raise at the op; the filter stays after the cell, ours goes
        result = shell.run_cell("%%gradsight\nimport warnings\nwarnings.simplefilter('error')\n" + body)
        assert isinstance(result.error_in_exec, UserWarning)
        assert warnings.filters[0][0] == "error" and not any("source" in str(f[3]) for f in warnings.filters)
    assert warnings.showwarning is warnings._showwarning_orig  # type: ignore[attr-defined]


def test_a_mode_the_cell_enters_and_keeps_stays_entered(shell: InteractiveShell) -> None:
    class Passing(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    shell.user_ns["mode"] = Passing()
    try:
        cell(shell, "mode.__enter__()\nw = torch.ones(2, requires_grad=True)\nloss = (w * 2).sum()")
        assert torch._C._len_torch_function_stack() == 1
        assert torch.overrides._get_current_function_mode() is shell.user_ns["mode"]
    finally:
        while torch._C._len_torch_function_stack():
            torch.overrides._pop_mode()


def test_a_cell_that_compiles_is_not_watched(shell: InteractiveShell) -> None:
    # dynamo guards on the mode stack and the global module hooks: a compiled model would compile again
    dbg = cell(shell, "w = torch.ones(2, requires_grad=True)\nloss = (w * 2).sum()\nlater = torch.compile")
    assert dbg.graph.find("SumBackward0")[0].source is None


# -- modules --------------------------------------------------------------------------------------------


def test_ops_get_the_module_whose_forward_made_them(shell: InteractiveShell) -> None:
    shell.run_cell(TINY_MODEL, store_history=True)
    dbg = cell(shell, "loss = model(x).pow(2).sum()\nloss.backward()")
    graph = dbg.graph
    assert graph.find("ReluBackward0")[0].module == "model.relu"  # consumes no parameter: was None
    assert graph.find("TanhBackward0")[0].module == "model"  # the model's own forward
    assert {n.module for n in graph.find("AddmmBackward0")} == {"model.layer1", "model.layer2"}
    assert graph.find("PowBackward0")[0].module is None  # the cell's own code
    assert "model.relu/ReluBackward0#0" in graph
    # the cell's own code using a parameter is no module's forward, as outside a runnable run's model
    dbg = cell(shell, "y = (x @ model.layer1.weight.T).sum()")
    assert dbg.graph.find("MmBackward0")[0].module is None and dbg.graph.find("PermuteBackward0")[0].module is None


def test_a_model_the_cell_makes_and_nodes_made_before_the_cell(shell: InteractiveShell) -> None:
    shell.run_cell(TINY_MODEL + "early = model(x)", store_history=True)
    dbg = cell(shell, "m = nn.Sequential(nn.Linear(2, 2), nn.ReLU())\nloss = m(early).sum()")
    graph = dbg.graph
    relus = {n.module for n in graph.find("ReluBackward0")}
    assert relus == {"m.1", None}  # the cell's module; the earlier one is guessed, and consumes no parameter
    assert {n.module for n in graph.find("AddmmBackward0")} == {"m.0", "model.layer1", "model.layer2"}


# -- .grad accumulated over backward calls ------------------------------------------------------------------


def test_grad_accumulated_over_two_backward_calls_says_so(shell: InteractiveShell) -> None:
    dbg = cell(
        shell,
        "w = torch.tensor([1., 2., 3.], requires_grad=True)\n"
        "loss1 = (torch.tensor([1., 2., 3.]) * w).sum()\nloss1.backward()\n"
        "loss2 = (torch.tensor([4., 5., 6.]) * w).sum()\nloss2.backward()\n",
    )
    leaf = dbg.graph.node("leaf:w")
    assert leaf.grad_norm == pytest.approx(float(torch.tensor([4.0, 5.0, 6.0]).norm()))  # the last call's
    (note,) = [n for n in dbg.graph.notes if ".grad" in n]
    assert "w.grad accumulated over 2 backward calls" in note and "last call's" in note
    assert f"{float(torch.tensor([5.0, 7.0, 9.0]).norm()):.4g}" in note  # the sum .grad holds
    assert "last backward call's" in dbg.why("w").message and "holds more" in dbg.why("w").message


def test_grad_reset_between_backward_calls_says_nothing(shell: InteractiveShell) -> None:
    dbg = cell(
        shell,
        "w = torch.tensor([1., 2., 3.], requires_grad=True)\nopt = torch.optim.SGD([w], lr=0.1)\n"
        "for step in range(3):\n    opt.zero_grad()\n    loss = (w * w).sum()\n    loss.backward()\n    opt.step()\n"
        "w.grad = None\n(w * 3).sum().backward()\n"
        "w.grad.zero_()\nloss = (w * 4).sum()\nloss.backward()\n",
    )
    assert not any(".grad" in n for n in dbg.graph.notes), dbg.graph.notes


def test_grad_held_from_an_earlier_cell_says_so(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.ones(3, requires_grad=True)\n(w * 2).sum().backward()", store_history=True)
    dbg = cell(shell, "loss = (w * 3).sum()\nloss.backward()")
    (note,) = [n for n in dbg.graph.notes if ".grad" in n]
    assert "w.grad already held a gradient" in note and f"{float(torch.full((3,), 2.0).norm()):.4g}" in note
    # several leaves: one note naming them
    shell.run_cell("v = torch.ones(2, requires_grad=True)", store_history=True)
    dbg = cell(shell, "for _ in range(2):\n    (w.sum() + v.sum()).backward()\nloss = w.sum() + v.sum()")
    (note,) = [n for n in dbg.graph.notes if ".grad" in n]
    assert "The .grad of 2 leaves" in note and "v (2 backward calls)" in note
    assert "w (2 backward calls on top of a gradient it held" in note


# -- saved values a backward freed -------------------------------------------------------------------------


def test_a_full_backward_hook_in_a_cell_is_not_reported_freed(shell: InteractiveShell) -> None:
    dbg = cell(
        shell,
        "lin = nn.Linear(4, 3)\nlin.register_full_backward_hook(lambda m, gi, go: None)\n"
        "loss = lin(torch.rand(2, 4, requires_grad=True)).sum()\nloss.backward()\n",
    )
    hooks = dbg.graph.find("BackwardHookFunctionBackward")  # around the inputs and the outputs
    assert len(hooks) == 2 and all(h.saved["saved_tensors"] == () for h in hooks)  # they saved none
    assert not any("freed" in n for n in dbg.graph.notes), dbg.graph.notes


def test_values_freed_before_the_cell_get_advice_for_a_cell(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.ones(3, requires_grad=True)\ny = (w * w).sum()\ny.backward()", store_history=True)
    dbg = cell(shell, "z = y * 2")
    (note,) = [n for n in dbg.graph.notes if "freed" in n]
    assert "%%gradsight cell" not in note and "earlier cell" in note
    reasons = [v.reason for n in dbg.graph.nodes for v in n.saved.values() if isinstance(v, Unavailable)]
    assert reasons and all("%%gradsight cell" not in r and "earlier cell" in r for r in reasons)


def test_a_training_loop_in_a_cell_keeps_a_bounded_record_and_its_last_steps_lines(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradsight._capture import cell_forward

    monkeypatch.setattr(cell_forward, "KEEP_FORWARD_CALLS", 40)
    shell.run_cell(TINY_MODEL + "opt = torch.optim.SGD(model.parameters(), lr=0.01)", store_history=True)
    body_cell = shell.execution_count
    dbg = cell(
        shell,
        "for step in range(30):\n    opt.zero_grad()\n    loss = model(x).pow(2).sum()\n    loss.backward()\n"
        "    opt.step()\n",
    )
    graph = dbg.graph
    assert graph.find("PowBackward0")[0].source == f"In[{body_cell}]:4  loss = model(x).pow(2).sum()"
    assert graph.find("ReluBackward0")[0].module == "model.relu"
    assert not any(".grad" in n for n in graph.notes)  # zero_grad each step: nothing accumulated


def test_a_cells_hooks_on_intermediate_tensors_keep_no_graph_alive(shell: InteractiveShell) -> None:
    # Only runnable runs need the nodes whose output got a hook; a cell's tracker kept each of a
    # training loop's graphs (and their saved activations) alive until the cell ended.
    real = source.SourceTracker.__init__

    def spy(self: source.SourceTracker, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        trackers.append(self)

    trackers: list[source.SourceTracker] = []
    source.SourceTracker.__init__ = spy  # type: ignore[method-assign]
    try:
        cell(
            shell,
            "w = torch.randn(8, 8, requires_grad=True)\n"
            "for step in range(5):\n    h = torch.randn(4, 8) @ w\n    h.register_hook(lambda g: g)\n"
            "    h.tanh().sum().backward()\n",
        )
    finally:
        source.SourceTracker.__init__ = real  # type: ignore[method-assign]
    seen = [len(t.hooked) for t in trackers]
    assert trackers and seen == [0] * len(trackers)


def test_blank_lines_at_the_top_of_a_cell_keep_the_notebooks_numbers(shell: InteractiveShell, capsys: Any) -> None:
    # IPython's transform_cell drops them: the lines after would all read too low
    shell.run_cell("w = torch.ones(3, requires_grad=True)")
    dbg = cell(shell, "\n\na = w * 2\nloss = a.sum()")
    assert dbg.graph.find("MulBackward0")[0].source.endswith(":4  a = w * 2")
    result = shell.run_cell("%%gradsight\n\n\nb = w @ torch.ones(5)", store_history=True)
    assert isinstance(result.error_in_exec, RuntimeError)
    assert "----> 4 b = w @ torch.ones(5)" in shown(capsys)
