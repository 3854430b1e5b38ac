"""A ``%%gradsight`` cell whose loss is never bound to a name shows the backward it ran (``cell_results``):
``model(x).sum().backward()``, a training step on ``F.mse_loss(...)``, ``torch.autograd.grad`` — with
gradients, modules and why() as for a bound loss, and re-runs with toggles; a backward through a graph an
earlier cell built still says so. Tensors inside containers the cell binds (an HF-style output dataclass,
a dict, a namedtuple) are results under the path the user reads them by (``out.loss``, ``outs['a']``)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

from gradsight._capture.cell_notes import UNBOUND_BACKWARD
from gradsight._capture.cell_results import MAX_DEPTH, UNBOUND_SHOWN, inside
from tests.cells import cell

SETUP = """import torch.nn.functional as F
from dataclasses import dataclass
torch.manual_seed(0)
m2 = nn.Linear(3, 1)
xx = torch.randn(5, 3)
t = torch.zeros(5, 1)
w = torch.randn(3, requires_grad=True)

@dataclass
class Out:
    loss: torch.Tensor
    logits: torch.Tensor

class HF(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(3, 2)
    def forward(self, input_ids, labels):
        logits = self.l(input_ids)
        return Out(F.cross_entropy(logits, labels), logits)

hf = HF()
batch = {"input_ids": torch.randn(4, 3), "labels": torch.tensor([0, 1, 1, 0])}
"""


@pytest.fixture
def sh(shell: InteractiveShell) -> InteractiveShell:
    shell.run_cell(SETUP, store_history=True)
    return shell


def leaf_norms(dbg: Any) -> dict[str, float | None]:
    return {n.leaf.name: n.grad_norm for n in dbg.graph.nodes if n.leaf is not None}


def test_a_loss_the_cell_never_bound_shows_the_backward_it_ran(sh: InteractiveShell) -> None:
    dbg = cell(sh, "m2(xx).sum().backward()")
    graph = dbg.graph
    m2 = sh.user_ns["m2"]
    assert graph.message is None and graph.roots == ("SumBackward0#0",)
    assert graph.node("m2/AddmmBackward0#0").module == "m2"
    norms = leaf_norms(dbg)
    assert norms["m2.weight"] == pytest.approx(float(m2.weight.grad.norm()), rel=1e-6)
    assert norms["m2.bias"] == pytest.approx(float(m2.bias.grad.norm()), rel=1e-6)
    assert all(n.executed for n in graph.nodes)
    assert UNBOUND_SHOWN in graph.notes
    assert not any(n.startswith(UNBOUND_BACKWARD) for n in graph.notes)  # not "one an earlier cell computed"
    assert not graph.missing
    why = dbg.why("m2.weight")
    assert "earlier cell" not in why.message and "got a gradient in this run" in why.message


def test_a_training_step_on_an_unbound_loss_shows_its_graph(sh: InteractiveShell) -> None:
    body = (
        "opt = torch.optim.SGD(m2.parameters(), lr=0.1)\nopt.zero_grad()\nF.mse_loss(m2(xx), t).backward()\nopt.step()"
    )
    dbg = cell(sh, body)
    assert dbg.graph.roots == ("MseLossBackward0#0",)
    m2 = sh.user_ns["m2"]
    assert leaf_norms(dbg)["m2.weight"] == pytest.approx(float(m2.weight.grad.norm()), rel=1e-6)
    assert "earlier cell" not in dbg.why("m2.weight").message


def test_autograd_grad_of_an_unbound_loss_is_shown(sh: InteractiveShell) -> None:
    dbg = cell(sh, "(g,) = torch.autograd.grad(m2(xx).sum(), m2.weight)")
    assert dbg.graph.roots == ("SumBackward0#0",)
    g = sh.user_ns["g"]
    assert leaf_norms(dbg)["m2.weight"] == pytest.approx(float(g.norm()), rel=1e-6)


def test_a_loop_over_an_unbound_loss_shows_its_last_backward(sh: InteractiveShell) -> None:
    dbg = cell(sh, "m2.bias.grad = None\nfor i in range(6):\n    (m2(xx) * i).sum().backward()")
    assert dbg.graph.roots == ("SumBackward0#0",)
    assert leaf_norms(dbg)["m2.bias"] == pytest.approx(5 * 5.0)  # the last call's: 5 rows times i = 5


def test_a_backward_through_an_earlier_cells_graph_keeps_its_wording(sh: InteractiveShell) -> None:
    sh.run_cell("loss = m2(xx).sum()", store_history=True)
    dbg = cell(sh, "loss.backward()")
    assert not dbg.graph.nodes
    assert any(n.startswith(UNBOUND_BACKWARD) and "earlier cell" in n for n in dbg.graph.notes)
    assert UNBOUND_SHOWN not in dbg.graph.notes


def test_a_rerun_of_an_unbound_loss_applies_its_toggles(sh: InteractiveShell) -> None:
    dbg = cell(sh, "m2(xx).sum().backward()")
    m2 = sh.user_ns["m2"]
    grad = m2.weight.grad.clone()
    graph = dbg.rerun(requires_grad={"m2.weight": False})
    assert "leaf:m2.weight" not in {n.id for n in graph.nodes} and "leaf:m2.bias" in {n.id for n in graph.nodes}
    assert dbg.diff["lost_grad"] == ["m2.weight"]
    assert m2.weight.requires_grad and torch.equal(m2.weight.grad, grad)  # the user's, untouched


def test_why_of_a_leaf_cut_from_an_unbound_loss_names_the_cut(sh: InteractiveShell) -> None:
    dbg = cell(sh, "(m2(xx).sum() + (w.detach() * 2).sum()).backward()")
    why = dbg.why("w")
    assert why.reason == "detach" and "detach()" in why.message


def test_tensors_in_an_output_dataclass_are_named_by_their_field(sh: InteractiveShell) -> None:
    dbg = cell(sh, "out = hf(**batch)\nout.loss.backward()")
    graph = dbg.graph
    assert [(n.id, n.variable) for n in graph.nodes if n.variable] == [
        ("hf/NllLossBackward0#0", "out.loss"),  # HF.forward computes its loss
        ("hf.l/AddmmBackward0#0", "out.logits"),
    ]
    assert all(n.executed for n in graph.nodes)
    assert UNBOUND_SHOWN not in graph.notes  # bound, inside a container


def test_a_last_value_holding_outputs_is_shown(sh: InteractiveShell) -> None:
    dbg = cell(sh, "hf(**batch)")
    assert dbg.graph.roots == ("hf/NllLossBackward0#0",)
    assert dbg.graph.node("hf/NllLossBackward0#0").variable == "the cell's last value.loss"


def test_a_dict_of_outputs_is_shown_under_its_keys(sh: InteractiveShell) -> None:
    dbg = cell(sh, "outs = {'a': hf.l(batch['input_ids'])}\nouts['a'].sum().backward()")
    assert dbg.graph.roots == ("hf.l/AddmmBackward0#0",)
    assert dbg.graph.node("hf.l/AddmmBackward0#0").variable == "outs['a']"


def test_a_container_loss_stays_shown_after_scratch_backward_calls(sh: InteractiveShell) -> None:
    body = "out = hf(**batch)\nout.loss.backward()\ns = torch.ones(2, requires_grad=True)\n"
    dbg = cell(sh, body + "for _ in range(8):\n    (s * 3).sum().backward()\n")
    assert dbg.graph.roots == ("hf/NllLossBackward0#0",)
    assert all(n.executed for n in dbg.graph.nodes)  # its backward call is kept, as a bound loss's


Pair = namedtuple("Pair", "first second")


@dataclass
class Holder:
    value: Any
    other: Any = None


def test_inside_reads_containers_as_the_user_does() -> None:
    w = torch.ones(2, requires_grad=True)
    a, b, c = w * 2, w * 3, w * 4
    found = dict(inside({"x": Pair(a, [b, 1]), 3: Holder(c), (1, 2): w * 5, "leaf": w}, "v"))
    assert list(found) == ["v['x'].first", "v['x'].second[0]", "v[3].value"]  # a tuple key: skipped
    assert found["v['x'].first"] is a and found["v[3].value"] is c
    deep: Any = w * 6
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    assert list(inside(deep, "d")) == []  # past MAX_DEPTH containers in


def test_inside_runs_no_iteration_of_the_users() -> None:
    class Loud(list[Any]):
        def __iter__(self) -> Any:
            raise RuntimeError("user code ran")

    y = torch.ones(2, requires_grad=True) * 2
    assert [n for n, _ in inside(Loud([y]), "l")] == ["l[0]"]


def test_a_kept_loss_history_draws_the_step_once(sh: InteractiveShell) -> None:
    one = cell(sh, "loss = m2(xx).pow(2).mean()\nloss.backward()")
    step = "    loss = m2(xx).pow(2).mean()\n    loss.backward()\n    losses.append(loss)"
    body = "losses = []\nfor step in range(6):\n" + step
    dbg = cell(sh, body)
    assert len(dbg.graph.roots) == 1 and len(dbg.graph.nodes) == len(one.graph.nodes)  # not 6 copies
    assert dbg.graph.node(dbg.graph.roots[0]).variable == "loss"
    assert all(n.executed for n in dbg.graph.nodes)


def test_an_unbound_loss_history_shows_its_last_entry(sh: InteractiveShell) -> None:
    body = "losses = []\nfor step in range(6):\n    losses.append(m2(xx).sum() * step)\n    losses[-1].backward()"
    dbg = cell(sh, body)
    assert len(dbg.graph.roots) == 1
    assert dbg.graph.node(dbg.graph.roots[0]).variable == "losses[5]"
    assert leaf_norms(dbg)["m2.bias"] == pytest.approx(5 * 5.0)  # the last step's gradient: 5 rows times 5


def test_a_list_of_outputs_of_one_graph_stays_results(sh: InteractiveShell) -> None:
    dbg = cell(sh, "parts = [p.sum() for p in m2(xx).split(1)]")
    assert [dbg.graph.node(r).variable for r in dbg.graph.roots] == [f"parts[{i}]" for i in range(5)]


def count_entries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch cell_results._entries to add up the entries it hands back (the values the walk looks at)."""
    from gradsight._capture import cell_results

    read = [0]
    original = cell_results._entries

    def counted(v: Any) -> list[tuple[str, Any]]:
        entries = original(v)
        read[0] += len(entries)
        return entries

    monkeypatch.setattr(cell_results, "_entries", counted)
    return read


def test_held_reads_no_data_container_deeply(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight._capture.cell_results import held

    read = count_entries(monkeypatch)
    ids = [[(i * j) % 50 for i in range(300)] for j in range(300)]  # token ids
    list(held({"ids": ids}, {}))
    assert read[0] <= 300  # the outer list's entries; each inner list is ints from its first entries


def test_held_reads_no_container_beside_a_bound_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight._capture.cell_results import held

    read = count_entries(monkeypatch)
    w = torch.ones(2, requires_grad=True)
    loss = (w * 2).sum()
    nodes = list(held({"loss": loss, "outs": [[w * 3] * 10] * 10}, {}))
    assert read[0] == 0 and nodes == [loss.grad_fn]


def test_held_looks_at_a_bounded_number_of_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradsight._capture import cell_results

    read = count_entries(monkeypatch)
    batches = [[torch.zeros(1) for _ in range(256)] for _ in range(256)]
    list(cell_results.held({"a": batches, "b": batches[:]}, {}))
    assert read[0] <= 4096 + 2 * 256  # not 2 x 256 x 256: one budget for all the cell's containers
