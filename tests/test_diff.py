"""The diff between a run and a what-if re-run matches nodes by what they compute (diff.py)."""

from __future__ import annotations

import torch
from torch import nn

import gradsight as gs


def test_a_removed_branch_is_the_node_it_removed_not_a_renumbered_neighbour() -> None:
    # ids count same-named ops: without w's graph, v's MulBackward0 becomes #0
    torch.manual_seed(0)
    w, v = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    dbg = gs.debugger(lambda: (w * 2 + v * 3).sum())
    (w_mul,) = [n.id for n in dbg.graph.nodes if n.name == "MulBackward0" and n.next[0][0] == "leaf:w"]
    (v_mul,) = [n.id for n in dbg.graph.nodes if n.name == "MulBackward0" and n.next[0][0] == "leaf:v"]
    after = dbg.rerun(requires_grad={"w": False})
    assert dbg.diff is not None
    assert sorted(r["id"] for r in dbg.diff["removed"]) == sorted([w_mul, "leaf:w"])
    assert dbg.diff["added"] == []
    (renumbered,) = [n for n in after.nodes if n.name == "MulBackward0"]
    assert renumbered.next[0][0] == "leaf:v" and renumbered.id != v_mul  # why matching by id alone failed


def test_a_frozen_module_removes_its_own_ops_and_leaves_only() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda out: out.sum())
    before = dbg.graph
    dbg.rerun(requires_grad={"2": False})
    assert dbg.diff is not None and dbg.diff["added"] == []
    expected = {n.id for n in before.nodes if n.module == "2" or (n.leaf is not None and n.leaf.name.startswith("2."))}
    assert {r["id"] for r in dbg.diff["removed"]} == expected - {"2/AddmmBackward0#0"}  # still needs input's grad
    assert set(dbg.diff["lost_grad"]) == {"2.weight", "2.bias"}
