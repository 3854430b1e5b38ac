"""graph.find() finds a tied weight by any of its paths: ``head.weight`` tied to ``emb.weight`` is one
leaf, shown as ``emb.weight``."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from gradsight.graph import Graph, LeafInfo, Node


def _graph() -> Graph:
    leaf = Node(id="leaf:emb.weight", name="AccumulateGrad", kind="leaf", leaf=LeafInfo("emb.weight", (4, 2), True))
    t = Node(id="head/TBackward0#0", name="TBackward0", kind="op", module="head", next=(("leaf:emb.weight", 0),))
    return Graph(nodes=(t, leaf), roots=("head/TBackward0#0",))


def test_find_takes_any_path_of_a_shared_parameter() -> None:
    graph = _graph().with_aliases({"head.weight": "emb.weight", "gone.weight": "not.here"})
    assert [n.id for n in graph.find("head.weight")] == ["leaf:emb.weight"]
    assert [n.id for n in graph.find("emb.weight")] == ["leaf:emb.weight"]
    assert [n.id for n in graph.find("head")] == ["head/TBackward0#0", "leaf:emb.weight"]
    assert dict(graph.aliases) == {"head.weight": "emb.weight"}  # only leaves this graph shows
    assert graph == _graph()  # a search aid: equality is the nodes'


CELL = """%%gradsight
out = lm.head(torch.tanh(lm.emb(ids)))
loss = out.pow(2).mean()
loss.backward()
"""


def test_a_cells_graph_finds_a_tied_weight_by_either_name_also_after_a_rerun(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nlm = nn.Module()\nlm.emb = nn.Embedding(10, 4)\nlm.head = nn.Linear(4, 10, bias=False)\n"
        "lm.head.weight = lm.emb.weight\nids = torch.randint(0, 10, (3, 5))",
        store_history=False,
    )
    dbg = shell.run_cell(CELL, store_history=False).result
    found = dbg.graph.find("lm.head.weight")
    assert [n.leaf.name for n in found if n.leaf is not None] == ["lm.emb.weight"]
    graph = dbg.rerun(no_grad=False)
    assert [n.leaf.name for n in graph.find("lm.head.weight") if n.leaf is not None] == ["lm.emb.weight"]


def test_runnable_and_live_graphs_find_a_tied_weight_by_either_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch import nn

    import gradsight as gs

    torch.manual_seed(0)
    lm = nn.Module()
    lm.emb, lm.head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    lm.head.weight = lm.emb.weight
    lm.forward = lambda ids: lm.head(torch.tanh(lm.emb(ids)))  # type: ignore[method-assign]
    ids = torch.randint(0, 10, (3, 5))
    dbg = gs.debugger(lm, inputs=ids, loss=lambda out: out.pow(2).mean())
    try:
        for graph in (dbg.graph, dbg.rerun()):
            assert [n.leaf.name for n in graph.find("head.weight") if n.leaf is not None] == ["emb.weight"]
    finally:
        dbg.close()
    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    live = gs.debugger(lm)
    try:
        lm(ids).pow(2).mean().backward()
        live._live.flush()
        assert [n.leaf.name for n in live.graph.find("head.weight") if n.leaf is not None] == ["emb.weight"]
    finally:
        live.close()


def test_a_cell_reaching_the_model_through_a_helper_finds_its_tied_weight(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nlm = nn.Module()\nlm.emb = nn.Embedding(10, 4)\nlm.head = nn.Linear(4, 10, bias=False)\n"
        "lm.head.weight = lm.emb.weight\nids = torch.randint(0, 10, (3, 5))\n"
        "def helper(): return lm.head(torch.tanh(lm.emb(ids))).pow(2).mean()",
        store_history=False,
    )
    dbg = shell.run_cell("%%gradsight\nloss = helper()\nloss.backward()", store_history=False).result
    found = dbg.graph.find("lm.head.weight")
    assert [n.leaf.name for n in found if n.leaf is not None] == ["lm.emb.weight"]


def test_a_tensor_debugger_with_a_module_as_params_finds_a_tied_weight_by_either_name() -> None:
    import torch
    from torch import nn

    import gradsight as gs

    torch.manual_seed(0)
    lm = nn.Module()
    lm.emb, lm.head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    lm.head.weight = lm.emb.weight
    loss = lm.head(torch.tanh(lm.emb(torch.randint(0, 10, (3, 5))))).pow(2).mean()
    dbg = gs.debugger(loss, params=lm)
    assert [n.id for n in dbg.graph.find("head.weight")] == [n.id for n in dbg.graph.find("emb.weight")] != []
    why = dbg.why("head.weight")
    assert "emb.weight" in why.message, why
