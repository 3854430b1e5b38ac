"""%%gradsight cells: what-if toggles on the cell's own variables (walrus bindings, not a function's
locals), cells that do not compile, and why() in a cell (only breaks that reach the loss count)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def leaf_names(graph: gs.Graph) -> list[str]:
    return sorted(n.leaf.name for n in graph.leaves if n.leaf and n.leaf.name)


# -- toggles reach the cell's variables, and only those ----------------------------------------------


def test_toggles_apply_to_a_variable_bound_with_walrus(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)", store_history=False)
    dbg = run(shell, "loss = (h := w * 2).sum() + (b := torch.randn(3, requires_grad=True)).sum()\nloss.backward()")
    assert {"h", "b"} <= set(dbg.graph.controls.variables) and leaf_names(dbg.graph) == ["b", "w"]
    b = shell.user_ns["b"]
    assert leaf_names(dbg.rerun(detach=["h"])) == ["b"]  # h is cut where it is bound, before .sum() uses it
    assert leaf_names(dbg.rerun(requires_grad={"b": False})) == ["w"]
    assert shell.user_ns["b"] is b and b.requires_grad  # the user's b is untouched


def test_detach_of_a_cell_variable_leaves_a_functions_local_of_that_name_alone(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)\nv = torch.randn(3, requires_grad=True)", silent=True)
    body = "def f(a):\n    h = a * 2\n    return h.sum()\nh = v * 3\nloss = f(w) + h.sum()\nloss.backward()"
    dbg = run(shell, body)
    assert leaf_names(dbg.graph) == ["v", "w"]
    assert leaf_names(dbg.rerun(detach=["h"])) == ["w"]


def test_detach_reaches_module_level_blocks_and_globals_declared_in_functions(shell: InteractiveShell) -> None:
    shell.run_cell(
        "w = torch.randn(3, requires_grad=True)\nv = torch.randn(3, requires_grad=True)\n"
        "u = torch.randn(3, requires_grad=True)",
        store_history=False,
    )
    body = (
        "def g():\n    global k\n    k = u * 5\n"
        "for i in range(1):\n    with torch.enable_grad():\n        if True:\n            try:\n"
        "                h = v * 3\n            finally:\n                pass\n"
        "g()\nloss = (w * 2).sum() + h.sum() + k.sum()\nloss.backward()"
    )
    dbg = run(shell, body)
    assert leaf_names(dbg.graph) == ["u", "v", "w"]
    assert leaf_names(dbg.rerun(detach=["h"])) == ["u", "w"]
    assert leaf_names(dbg.rerun(detach=["k"])) == ["v", "w"]


def test_detach_reaches_a_global_declared_in_a_nested_function(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)\nv = torch.randn(3, requires_grad=True)", False)
    body = "def outer():\n    def inner():\n        global h\n        h = w * 2\n    inner()\nouter()\n"
    dbg = run(shell, body + "loss = (h * v).sum()\nloss.backward()")
    assert leaf_names(dbg.graph) == ["v", "w"]
    assert leaf_names(dbg.rerun(detach=["h"])) == ["v"]


def test_a_functions_local_is_not_offered_as_a_cell_variable(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)", store_history=False)
    dbg = run(shell, "def f(a):\n    z = a * 2\n    return z.sum()\nloss = f(w)\nloss.backward()")
    assert "z" not in dbg.graph.controls.variables and "loss" in dbg.graph.controls.variables
    assert "w" in {c.name for c in dbg.graph.controls.leaves}


# -- cells that do not compile -------------------------------------------------------------------------


def _shown(capsys: Any) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # no colours


def test_a_syntax_error_reads_like_a_plain_cells_and_shows_no_debugger(
    shell: InteractiveShell, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", shown.append)
    result = shell.run_cell("%%gradsight\nx = torch.ones(3, requires_grad=True)\ny = (x * 2\n", store_history=False)
    assert not result.success and result.result is None and not shown  # Run All stops; no debugger
    out = _shown(capsys)
    assert "line 3" in out and "y = (x * 2" in out and "SyntaxError" in out and "never closed" in out
    assert "magic.py" not in out and "cell.py" not in out and "<unknown>" not in out
    assert "x" not in shell.user_ns  # nothing of the cell ran


def test_top_level_await_is_refused_before_the_cell_runs_saying_what_to_do(
    shell: InteractiveShell, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", shown.append)
    shell.run_cell("w = torch.randn(3, requires_grad=True)", store_history=False)
    body = "import asyncio\nloss = (w * 8).sum()\nawait asyncio.sleep(0)\n"
    result = shell.run_cell("%%gradsight\n" + body, store_history=False)
    assert not result.success and not shown and "loss" not in shell.user_ns
    out = _shown(capsys)
    assert "line 4" in out and "await asyncio.sleep(0)" in out and "magic.py" not in out
    assert "top-level await" in out and "plain cell" in out
    assert "top-level await" in str(result.error_in_exec)
    # an async function defined (not awaited at top level) in the cell is fine
    dbg = run(shell, "async def f():\n    return 1\nloss = (w * 8).sum()")
    assert isinstance(dbg, gs.Debugger) and dbg.graph.find("SumBackward0")


# -- why() in a cell: only breaks on the way to the loss -----------------------------------------------


def test_why_in_a_cell_ignores_a_value_computed_under_no_grad_that_never_reaches_the_loss(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(
        "w_ok = torch.randn(3, requires_grad=True)\nw_ng = torch.randn(3, requires_grad=True)\n"
        "w_onlyng = torch.randn(3, requires_grad=True)\nw_det = torch.randn(3, requires_grad=True)",
        store_history=False,
    )
    body = (
        "with torch.no_grad():\n    t = w_ng * 3\n    u = w_onlyng * 2\n    n = w_det.norm()\n"
        "loss = (w_ok * 2).sum() + t.sum() + (w_det.detach() * 2).sum()\nloss.backward()"
    )
    dbg = run(shell, body)
    assert dbg.why("w_onlyng").reason == "not_on_path"  # u is a value of its own, not the loss
    ng = dbg.why("w_ng")
    assert ng.reason == "no_grad" and ng.source is not None and "t = w_ng * 3" in ng.source
    det = dbg.why("w_det")  # its norm, logged under no_grad first, is not where the path breaks
    assert det.reason == "detach" and det.source is not None and "w_det.detach()" in det.source


def test_why_takes_one_name_and_words_a_tensor_debuggers_answer_for_it() -> None:
    import torch

    model = torch.nn.Linear(3, 1)
    dbg = gs.debugger(model(torch.randn(2, 3)).sum(), params=model)
    with pytest.raises(TypeError, match=r"why\(\) takes one leaf name as a str"):
        dbg.why(["weight"])  # type: ignore[arg-type]
    answer = dbg.why("weight")
    assert "cell" not in answer.message and "runs no backward" in answer.message
