"""why() names a graph cut by a tensor turned into Python values and back: ``torch.tensor(x.item())``,
``float(x)``, ``.tolist()``, ``.numpy()`` + ``torch.from_numpy`` (a number has no graph)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def _scale_item(w: torch.Tensor) -> torch.Tensor:
    return torch.tensor(w.sum().item())  # the cut


def _scale_float(w: torch.Tensor) -> torch.Tensor:
    return torch.tensor(float(w.sum()))  # the cut


def _scale_tolist(w: torch.Tensor) -> torch.Tensor:
    return torch.tensor(w.tolist())  # the cut


def _scale_numpy(w: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy((w * 1).detach().numpy())  # the cut


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")
@pytest.mark.parametrize(
    ("make", "reason", "named"),
    [
        (_scale_item, "detach", ".item()"),
        (_scale_float, "detach", "float()"),
        (_scale_tolist, "detach", ".tolist()"),
        (_scale_numpy, "detach", "detach()"),  # the detach is the cut; the array carries it to the loss
    ],
)
def test_why_names_a_tensor_turned_into_python_values_and_back(
    make: Callable[[torch.Tensor], torch.Tensor], reason: str, named: str
) -> None:
    torch.manual_seed(0)
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3, requires_grad=True)

    def step() -> torch.Tensor:
        return (x * make(w)).sum()

    dbg = gs.debugger(step)
    assert any(m.name == "w" for m in dbg.graph.missing)
    why = dbg.why("w")
    assert why.reason == reason, why
    assert named in why.message
    assert why.source is not None and "# the cut" in why.source and "test_why_to_python.py" in why.source
    assert w.grad is None and x.grad is None  # the trace changed nothing


def test_a_number_changed_in_plain_python_names_the_conversion_as_the_likely_cut() -> None:
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(3, requires_grad=True)

    def step() -> torch.Tensor:
        scale = w.sum().item() * 2  # plain Python from here
        return (x * torch.tensor(scale)).sum()

    why = gs.debugger(step).why("w")
    assert why.reason == "not_on_path" and ".item()" in why.message
    assert why.source is not None and "scale = w.sum().item() * 2" in why.source


def test_a_cached_small_int_is_not_followed_into_unrelated_calls() -> None:
    w = torch.randn(3, requires_grad=True)
    x = torch.randn(2, 3, requires_grad=True)

    def step() -> torch.Tensor:
        k = int(w.sum() * 0 + 1)  # 1: the interpreter's one object for every 1
        assert k == 1
        return x.sum(dim=1).sum()  # dim=1 is that same object, and has nothing of w

    why = gs.debugger(step).why("w")
    assert why.reason == "not_on_path", why


def test_a_cell_result_made_from_item_says_so_and_why_names_the_line(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\ntemp = nn.Linear(4, 1)\nbody = nn.Linear(4, 1)\nx = torch.randn(6, 4)",
        store_history=False,
    )
    cell = "%%gradsight\nt = torch.tensor(temp(x).mean().item())\nloss = (body(x) / t.abs()).pow(2).mean()\n"
    cell += "loss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    why = dbg.why("temp.weight")
    assert why.reason == "detach" and ".item()" in why.message
    assert why.source is not None and "t = torch.tensor(temp(x).mean().item())" in why.source
    assert dbg.why("t").reason == "detach" and ".item()" in dbg.why("t").message

    alone = shell.run_cell("%%gradsight\nt = torch.tensor(temp(x).mean().item())", store_history=False).result
    assert alone.graph.message is not None and "Python number" in alone.graph.message
    assert ".item()" in alone.graph.message


def test_a_cell_result_made_of_numbers_that_never_required_grad_is_no_cut_by_a_conversion() -> None:
    from gradsight._capture.cell_cuts import cut_results

    torch.manual_seed(0)
    ns = {"np": np, "x": torch.randn(3), "w": torch.randn(3, requires_grad=True), "lin": torch.nn.Linear(3, 1)}
    code = (
        "idx = torch.tensor(np.arange(3).tolist())\nscale = torch.tensor(x.sum().item())\n"
        "acc = torch.tensor(w.detach().sum().item())\nt = torch.tensor(w.sum().item())\nu = torch.tensor(lin(x).item())"
    )
    cuts = cut_results(code, ns)
    assert set(cuts) == {"t", "u"}  # acc: cut by its .detach() before the conversion
    assert ".item()" in cuts["t"][1] and ".item()" in cuts["u"][1]


def test_a_number_only_logged_is_no_cut_of_a_leaf_off_the_path() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(8, 4)
    w = torch.randn(4, requires_grad=True)
    logged: list[str] = []

    def step() -> torch.Tensor:
        logged.append(f"w norm {w.norm().item():.3f}")
        return torch.nn.functional.dropout(lin(x), 0.0).sum()

    why = gs.debugger(step).why("w")
    assert why.reason == "not_on_path" and ".item()" not in why.message and "not on the path" in why.message


def test_a_big_tolist_is_not_followed_value_by_value_but_still_named_as_the_likely_cut() -> None:
    from gradsight._capture.taint_numbers import FOLLOWED_AT_MOST

    torch.manual_seed(0)
    w = torch.randn(FOLLOWED_AT_MOST + 1, requires_grad=True)
    x = torch.randn(FOLLOWED_AT_MOST + 1, requires_grad=True)

    def step() -> torch.Tensor:
        return (x * torch.tensor(w.tolist())).sum()  # the cut

    why = gs.debugger(step).why("w")
    assert why.reason == "not_on_path" and ".tolist()" in why.message and "if the loss uses" in why.message
    assert why.source is not None and "# the cut" in why.source


def test_a_cell_result_made_of_numpy_numbers_is_not_blamed_on_a_conversion(shell: InteractiveShell) -> None:
    shell.run_cell("import numpy as np\nw = torch.randn(3, requires_grad=True)", store_history=False)
    cell = "%%gradsight\nidx = torch.tensor(np.arange(3).tolist())\nloss = (w * 2).sum()\nloss.backward()"
    dbg = shell.run_cell(cell, store_history=False).result
    why = dbg.why("idx")
    assert ".tolist()" not in why.message and "Python number" not in why.message, why
    alone = shell.run_cell("%%gradsight\nidx = torch.tensor(np.arange(3).tolist())", store_history=False).result
    assert alone.graph.message is not None and ".tolist()" not in alone.graph.message, alone.graph.message
