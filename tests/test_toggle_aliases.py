"""Tied weights (``head.weight is emb.weight``) through the debugger: either path of the shared
parameter is a toggle — from Python, from the view's pending toggles, in live mode and in a cell —
and why() answers for either, and says which toggle froze it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.mid = nn.Embedding(10, 4), nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mid(self.emb(i))))


TOKENS = torch.tensor([1, 2, 3])


def with_grad(graph: gs.Graph) -> list[str]:
    return sorted(n.leaf.name for n in graph.leaves if n.leaf is not None and n.leaf.name and n.executed)


def _debugger() -> tuple[Tied, gs.Debugger]:
    model = Tied()
    return model, gs.debugger(model, inputs=TOKENS, loss=lambda o: o.pow(2).sum())


def test_the_second_path_of_a_tied_weight_is_a_toggle_on_the_shared_tensor() -> None:
    model, dbg = _debugger()
    graph = dbg.rerun(requires_grad={"head.weight": False})
    assert with_grad(graph) == ["mid.bias", "mid.weight"]
    assert dbg.diff is not None and dbg.diff["lost_grad"] == ["emb.weight"]
    assert graph.run.toggles["requires_grad"] == {"emb.weight": False}  # kept under the name shown
    assert model.emb.weight.requires_grad  # put back
    dbg.rerun(requires_grad={"head.weight": False}, apply=True)
    assert not model.emb.weight.requires_grad and model.head.weight is model.emb.weight


def test_the_view_may_name_the_second_path_of_a_tied_weight() -> None:
    model, dbg = _debugger()
    dbg.set_state({"pending": {**gs.widget.NO_PENDING, "requires_grad": {"head.weight": False}}})
    assert dbg.error == "" and dbg.pending["requires_grad"] == {"head.weight": False}
    graph = dbg._rerun_pending()
    assert with_grad(graph) == ["mid.bias", "mid.weight"] and model.emb.weight.requires_grad


def test_why_answers_for_either_path_and_names_the_toggle_that_froze_the_shared_tensor() -> None:
    _, dbg = _debugger()
    first = dbg.why("head.weight")  # was a KeyError: no leaf named 'head.weight'
    assert "same tensor as emb.weight" in first.message and "got a gradient" in first.message
    dbg.rerun(requires_grad={"head": False})  # freezing the head freezes the embedding it shares
    for name in ("emb.weight", "head.weight"):
        why = dbg.why(name)
        assert why.reason == "requires_grad_false", why.message  # was: could not find where the path breaks
        assert "toggle on head set it off" in why.message
    assert [(w.name, w.reason) for w in dbg.graph.missing] == [("emb.weight", "requires_grad_false")]


def test_the_longest_module_prefix_over_every_path_wins() -> None:
    _, dbg = _debugger()
    graph = dbg.rerun(requires_grad={"head": False, "emb": True})  # as WhatIf.flips: the longer path last
    assert "emb.weight" not in with_grad(graph)
    assert "toggle on head set it off" in dbg.why("emb.weight").message
    assert "emb.weight" in with_grad(dbg.rerun(requires_grad={"head": True, "emb": False}))


def test_a_live_rerun_takes_the_second_path_of_a_tied_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs.options, "live_interval", 0.0)  # capture every step
    monkeypatch.setattr(gs.options, "live_share", 1.0)
    model = Tied()
    dbg = gs.debugger(model)
    try:
        model(TOKENS).pow(2).sum().backward()
        graph = dbg.rerun(requires_grad={"head.weight": False})
        assert with_grad(graph) == ["mid.bias", "mid.weight"] and model.emb.weight.requires_grad
        assert "toggle set it off" in dbg.why("head.weight").message
    finally:
        dbg.close()


def test_a_cell_takes_the_second_path_of_a_tied_weight(shell: InteractiveShell) -> None:
    shell.user_ns.update(Tied=Tied, tokens=TOKENS)
    shell.run_cell("model = Tied()", store_history=False)
    dbg: Any = shell.run_cell("%%gradsight\nloss = model(tokens).pow(2).sum()\nloss.backward()\n").result
    graph = dbg.rerun(requires_grad={"model.head.weight": False})
    assert with_grad(graph) == ["model.mid.bias", "model.mid.weight"]
    assert shell.user_ns["model"].emb.weight.requires_grad
    assert "toggle set it off" in dbg.why("model.head.weight").message


def test_why_of_a_misspelt_leaf_says_did_you_mean() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    dbg = gs.debugger(model, inputs=torch.randn(2, 3), loss=lambda out: out.sum())
    with pytest.raises(KeyError, match=r"no leaf named '0\.wieght'; did you mean '0\.weight'"):
        dbg.why("0.wieght")
    assert dbg.why("0.weight").name == "0.weight"
