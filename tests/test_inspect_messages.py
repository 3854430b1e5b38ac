"""What ``dbg.inspect`` tells a user who passed an id that names no node, and what the inspector
says of a live big graph's values it did not keep."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradsight as gs

pytestmark = pytest.mark.usefixtures("every_step")


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def test_inspect_before_a_live_step_says_to_run_one() -> None:
    model = _model()
    dbg = gs.debugger(model)
    try:
        with pytest.raises(KeyError, match=r"has not seen a training step\. Run one"):
            dbg.inspect("leaf:0.weight")
    finally:
        dbg.close()


def test_inspect_of_a_leaf_name_or_an_op_name_names_the_ids() -> None:
    model = _model()
    dbg = gs.debugger(model)
    try:
        model(torch.randn(2, 3)).sum().backward()
        with pytest.raises(KeyError, match=r"did you mean 'leaf:0\.weight'\?"):
            dbg.inspect("0.weight")
        ids = sorted(n.id for n in dbg.graph.find("AddmmBackward0"))
        with pytest.raises(KeyError) as op:
            dbg.inspect("AddmmBackward0")
        assert all(repr(i) in str(op.value) for i in ids), str(op.value)
        with pytest.raises(KeyError, match=r"Known: .*'leaf:0\.weight'"):  # a small graph: its ids
            dbg.inspect("NoSuchBackward0#7")
        with pytest.raises(TypeError, match=r"takes a node id \(a str\).*got None"):
            dbg.inspect(None)  # type: ignore[arg-type]
        assert dbg.inspect("leaf:0.weight").node == "leaf:0.weight"  # a right id still works
    finally:
        dbg.close()


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2 = nn.Linear(64, 512), nn.Linear(512, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(torch.relu(self.l1(x)))


def test_live_big_graph_note_says_a_rerun_keeps_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "keep_all_below", 1 << 20)
    torch.manual_seed(0)
    model = _Net()
    dbg = gs.debugger(model)
    try:
        model(torch.randn(1024, 64)).pow(2).mean().backward()
        node = next(n for n in dbg.graph.nodes if n.name == "AddmmBackward0" and n.module == "l1")
        saved = {t.key: t for t in dbg.inspect(node.id).tensors}["saved:_saved_mat1"]
        assert not saved.kept and saved.note is not None
        assert "dbg.rerun()" in saved.note and "runnable debugger" not in saved.note, saved.note
        dbg.rerun()  # what the note says: the re-run keeps the values of the node inspected in it
        node = next(n for n in dbg.graph.nodes if n.name == "AddmmBackward0" and n.module == "l1")
        assert {t.key: t for t in dbg.inspect(node.id).tensors}["saved:_saved_mat1"].kept
    finally:
        dbg.close()
