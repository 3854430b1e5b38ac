"""Which of the namespace's names a %%gradsight cell uses: those of its own scope and those its
functions, lambdas, classes and comprehensions read from it, never their parameters and locals (the
seed's ``def forward(self, x): x = ...`` does not make an earlier cell's ``x`` one of the cell's leaves)."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from gradsight._capture.cell import cell_names

MODULE = """
class TestModule(nn.Module):
    def __init__(self, input_size, output_size):
        super().__init__()
        self.linear1 = nn.Linear(input_size, 5)
        self.linear2 = nn.Linear(5, output_size)
    def forward(self, x):
        x = self.linear1(x)
        x = torch.relu(x)
        return self.linear2(x)
model = TestModule(10, 2)
"""


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def test_parameters_and_locals_of_functions_are_not_the_cells_names() -> None:
    used, assigned = cell_names("def f(a, *rest, k=d, **kw):\n    h = a * w\n    return h + k\ny = f(b)")
    assert used == {"f", "d", "w", "y", "b"} and assigned == {"y"}


def test_lambdas_comprehensions_and_classes_keep_their_own_names() -> None:
    code = (
        "g = lambda q: q * p\n"
        "s = [i * t for i in items]\n"
        "m = {k: v for k, v in pairs}\n"
        "class C:\n    cv = 1\n    def m(self, x):\n        return x + cv\n"
    )
    used, _ = cell_names(code)
    # a method reads the global cv (a class body's names are not visible from its methods)
    assert used == {"g", "p", "s", "t", "items", "m", "pairs", "C", "cv"}


def test_a_name_a_function_declares_global_or_reads_from_an_enclosing_one() -> None:
    code = "def f():\n    global k\n    k = u * 2\n    z = 3\n    def g():\n        return z + r\n    return g\n"
    used, assigned = cell_names(code)
    assert used == {"f", "k", "u", "r"} and assigned == {"k"}  # z is f's, r reaches the cell's scope


def test_a_methods_argument_does_not_make_a_global_of_that_name_a_leaf(shell: InteractiveShell) -> None:
    shell.run_cell("x = torch.randn(5, requires_grad=True)\ny = x.detach()", store_history=False)
    dbg = run(shell, MODULE)
    controls = [c.name for c in dbg.graph.controls.leaves]
    assert "x" not in controls and "model.linear1.weight" in controls
    assert [m.name for m in dbg.graph.missing] == []
    with pytest.raises(KeyError, match=r"no leaf named 'x'"):
        dbg.why("x")


def test_a_global_a_function_reads_is_still_the_cells_leaf(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3, requires_grad=True)\nx = torch.randn(3, requires_grad=True)", silent=True)
    body = "def f(x):\n    return (x * w).sum()\nb = torch.ones(3, requires_grad=True)\nloss = f(b)\nloss.backward()"
    dbg = run(shell, body)
    controls = {c.name: c.in_graph for c in dbg.graph.controls.leaves}
    assert controls == {"w": True, "b": True}  # not the global x, forward's argument's name
    assert [n.leaf.name for n in dbg.rerun(requires_grad={"w": False}).leaves if n.leaf] == ["b"]
