"""The widget's re-run plumbing: the panel after a re-run, re-running from an older run, the view's
writes of run indices and toggles, and re-runs after the parameters changed (an optimizer step)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs
from gradsight.toggles import ToggleError


def _model() -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(16, 4)


def _debugger() -> tuple[nn.Sequential, torch.Tensor, gs.Debugger]:
    model, x = _model()
    return model, x, gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).sum())


class Sent:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, content: dict[str, Any], buffers: Any = None) -> None:
        self.messages.append(content)


def _rerun_request(dbg: gs.Debugger, sent: Sent, after: object) -> dict[str, Any]:
    dbg._on_msg(dbg, {"type": "rerun", "request_id": "r", "after_run": after}, [])
    return sent.messages[-1]


def _norms(diff: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {row["name"]: (row["before"], row["after"]) for row in diff["grad_norms"]}


def test_a_node_detach_rerun_shows_its_own_toggles_without_an_error() -> None:
    # The run's toggles written to the panel were checked as the view's, against the new graph,
    # where the detached node is gone: "toggles not accepted", and the panel reset.
    _, _, dbg = _debugger()
    relu = dbg.graph.find("ReluBackward0")[0].id
    graph = dbg.rerun(detach=[relu])
    assert relu not in graph and dbg.status == "ready" and dbg.error == ""
    assert dbg.pending["detach"] == [relu]


def test_the_view_reruns_from_an_older_run_it_shows_and_a_second_click_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, dbg = _debugger()
    sent = Sent()
    monkeypatch.setattr(dbg, "send", sent)
    dbg.rerun(requires_grad={"0": False})  # run 1
    dbg.set_state({"current": 0})  # the view picks the first run, then toggles and clicks Re-run
    dbg.set_state({"pending": {**gs.widget.NO_PENDING, "requires_grad": {"2.weight": False}}})
    assert _rerun_request(dbg, sent, 0) == {"type": "rerun", "request_id": "r", "ok": True, "run": 2}
    assert dbg.current == 2 and dbg.baseline == 0  # compared with the run it was made from
    assert dbg.diff is not None and dbg.diff["lost_grad"] == ["2.weight"]
    reply = _rerun_request(dbg, sent, 0)  # the double click's second request, queued behind the first
    assert reply["ok"] is False and "second click" in reply["error"]
    assert [h["index"] for h in dbg.history] == [0, 1, 2] and dbg.current == 2


@pytest.mark.parametrize("after", [10**30, -1, 7, True, "0", None])
def test_a_rerun_request_from_no_run_of_the_history_is_refused(monkeypatch: pytest.MonkeyPatch, after: object) -> None:
    _, _, dbg = _debugger()
    sent = Sent()
    monkeypatch.setattr(dbg, "send", sent)
    reply = _rerun_request(dbg, sent, after)
    assert reply["ok"] is False and "after_run" in reply["error"]
    assert len(dbg.history) == 1 and dbg.graph.run.index == 0


def test_pending_toggles_written_after_close_are_put_back() -> None:
    _, _, dbg = _debugger()
    before = dict(dbg.pending)
    dbg.close()
    dbg.set_state({"pending": {**gs.widget.NO_PENDING, "requires_grad": {"0.weight": False}, "no_grad": True}})
    assert dbg.pending == before and "closed" in dbg.error


@pytest.mark.parametrize(("key", "value"), [("current", False), ("current", True), ("baseline", True)])
def test_a_bool_for_a_run_index_from_the_view_is_refused(key: str, value: bool) -> None:
    _, _, dbg = _debugger()
    dbg.rerun(requires_grad={"0": False})
    before = (dbg.current, dbg.baseline, dbg.graph, dbg.diff)
    dbg.set_state({key: value})
    assert (dbg.current, dbg.baseline, dbg.graph, dbg.diff) == before
    assert type(dbg.current) is int and type(dbg.baseline) is int  # not synced back as a boolean
    assert key in dbg.error


def test_a_cell_offers_only_tensor_variables_and_refuses_others_up_front(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\nx = torch.randn(6, 4)", store_history=False)
    dbg = shell.run_cell("%%gradsight\nk = 3\nloss = (model(x) * k).pow(2).sum()\n", store_history=False).result
    assert dbg.graph.controls.variables == ("loss",)
    shown = dbg.graph
    for toggles in ({"detach": ["k"]}, {"requires_grad": {"k": True}}):
        with pytest.raises(ToggleError, match="k is int, not a tensor"):
            dbg.rerun(**toggles)
        assert dbg.status == "ready" and dbg.graph is shown and len(dbg.history) == 1


def test_detach_true_is_refused_in_the_toggles_own_words() -> None:
    # The cell check after a ToggleError unpacked detach: a TypeError hid the message.
    _, _, dbg = _debugger()
    with pytest.raises(ToggleError, match=r"detach must be a list of names.*got True"):
        dbg.rerun(detach=True)  # type: ignore[arg-type]
    assert dbg.status == "ready" and len(dbg.history) == 1


def test_a_cell_variable_detached_by_a_bare_string_is_named_whole(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\nx = torch.randn(6, 4)", store_history=False)
    dbg = shell.run_cell("%%gradsight\nscale = 3\nloss = (model(x) * scale).sum()\n", store_history=False).result
    with pytest.raises(ToggleError, match="scale is int, not a tensor"):  # not split into 's', 'c', ...
        dbg.rerun(detach="scale")
    with pytest.raises(ToggleError, match="detach must be a list of names"):
        dbg.rerun(detach=True)


def _sgd_step(model: nn.Module, x: torch.Tensor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).pow(2).sum().backward()
    opt.step()
    opt.zero_grad()


def test_a_rerun_after_an_optimizer_step_compares_with_the_run_shown_made_again() -> None:
    model, x, dbg = _debugger()
    _sgd_step(model, x)
    now = model(x).pow(2).sum().item()  # the loss on the parameters as they are now
    graph = dbg.rerun(requires_grad={"2.bias": False})
    assert [h["index"] for h in dbg.history] == [0, 1, 2]
    assert dbg.history[1]["label"] == "first run again, parameters now"
    again = dbg._runs.get(1)
    assert again is not None and again.toggles.empty and again.graph.run.loss == pytest.approx(now, rel=1e-6)
    assert dbg.current == 2 and dbg.baseline == 1
    assert any("parameters changed since run 0" in n and "(run 1)" in n for n in graph.notes)
    assert any("baseline of run 2" in n for n in again.graph.notes)
    assert dbg.diff is not None and dbg.diff["loss"]["before"] == dbg.diff["loss"]["after"]  # the toggle alone
    norms = _norms(dbg.diff)
    assert norms["0.weight"][0] == norms["0.weight"][1] and norms["2.bias"][1] is None


def test_a_rerun_without_changes_says_nothing_and_one_with_the_same_toggles_runs_once() -> None:
    model, x, dbg = _debugger()
    graph = dbg.rerun()
    assert not graph.notes and len(dbg.history) == 2
    _sgd_step(model, x)
    graph = dbg.rerun()  # the same toggles as the run shown: the diff is the optimizer step's
    assert len(dbg.history) == 3 and dbg.baseline == 1
    assert any("parameters changed since run 1" in n and "shows that change." in n for n in graph.notes)
    assert graph.run.loss == pytest.approx(model(x).pow(2).sum().item(), rel=1e-6)


def test_a_rerun_after_the_inputs_changed_in_place_says_so() -> None:
    _, x, dbg = _debugger()
    with torch.no_grad():
        x.mul_(2)
    graph = dbg.rerun(requires_grad={"2.bias": False})
    assert len(dbg.history) == 3 and any("inputs were written in place since run 0" in n for n in graph.notes)


def test_a_rerun_runs_under_the_autocast_the_debugger_was_made_in() -> None:
    model, x = _model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dbg = gs.debugger(model, inputs=x, loss=lambda o: o.float().pow(2).sum())
        reference = model(x).float().pow(2).sum()
    first = dbg.graph
    assert first.find("ToCopyBackward0")  # the bfloat16 casts autocast inserts
    graph = dbg.rerun()  # outside the autocast region
    assert [n.id for n in graph.nodes] == [n.id for n in first.nodes]
    assert graph.run.loss == first.run.loss == pytest.approx(reference.item())
    assert dbg.diff is not None and not dbg.diff["added"] and not dbg.diff["removed"]


def test_a_layer_appended_since_the_last_run_can_be_toggled_at_once() -> None:
    # The toggles were checked against the last graph's controls: the new layer only after a plain rerun().
    model, _, dbg = _debugger()
    model.append(nn.Linear(2, 1))
    graph = dbg.rerun(requires_grad={"3.weight": False})
    assert "3" in graph.controls.modules
    assert [w.name for w in graph.missing] == ["3.weight"]
    assert "3.bias" in {n.leaf.name for n in graph.leaves if n.leaf is not None}
    model.append(nn.Linear(1, 1))  # the view's toggles are checked the same way
    dbg.set_state({"pending": {**gs.widget.NO_PENDING, "requires_grad": {"4.bias": False}}})
    assert dbg.pending["requires_grad"] == {"4.bias": False} and dbg.error == ""
    model.append(nn.LazyLinear(1))  # a run would initialize it: refused, saying why, nothing run
    with pytest.raises(gs.RerunError, match="lazy modules"):
        dbg.rerun(requires_grad={"5.weight": False})
    assert dbg.status == "ready" and len(dbg.history) == 3  # the first run, made again, and the toggled one


def test_a_parameter_replaced_since_the_run_is_a_parameter_change_not_an_input_edit() -> None:
    # facts() read the names of the last run: the replaced weight counted as an input written in place.
    model, _, dbg = _debugger()
    shown = dbg._runs.get(0)
    assert shown is not None and shown.facts is not None
    model[0].weight = nn.Parameter(torch.randn(8, 4))
    assert dbg._target.changed(shown.facts) == ("parameters",)  # asked before anything else rescoped
    graph = dbg.rerun(requires_grad={"0.weight": False})
    assert any("parameters changed since run 0" in n for n in graph.notes)
    assert not any("inputs" in n for n in graph.notes)
    assert dbg.diff is not None and dbg.diff["lost_grad"] == ["0.weight"]


# -- re-runs after the model changed: a full history, a closed debugger, toggles naming what is gone ----


def test_a_full_history_keeps_the_run_a_rerun_is_compared_with() -> None:
    # The view showed the oldest of 8 runs and re-ran from it: the new run evicted it, and the diff
    # silently compared with the newest run instead (and named toggles nobody changed).
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(16, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).sum())
    dbg.rerun(requires_grad={"0.weight": False})
    for i in range(7):
        dbg.rerun(requires_grad={"2.bias": bool(i % 2)})
    oldest = dbg.history[0]["index"]
    dbg.current = oldest
    dbg.rerun(requires_grad={"0.weight": False, "2.weight": False})
    assert dbg.baseline == oldest and oldest in [h["index"] for h in dbg.history] and len(dbg.history) == 8
    assert dbg.diff is not None and dbg.diff["lost_grad"] == ["2.weight"]
    dbg.close()


class _Closing(nn.Module):
    """Closes its debugger in its ``closing_at``-th forward (the user's code closing it mid-run)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.dbg, self.calls, self.closing_at = nn.Linear(4, 2), None, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.dbg is not None and self.calls == self.closing_at:
            self.dbg.close()
        return self.lin(x)


@pytest.mark.parametrize("closing_at", [1, 2])  # while the run shown is made again; while the re-run runs
def test_closed_while_a_changed_model_is_re_run_says_so(closing_at: int) -> None:
    model, x = _Closing(), torch.randn(3, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.sum())
    with torch.no_grad():
        model.lin.weight.add_(1)  # an optimizer step: the re-run first makes the run shown again
    model.calls, model.dbg, model.closing_at = 0, dbg, closing_at
    with pytest.raises(gs.RerunError, match="closed during the re-run"):
        dbg.rerun(requires_grad={"lin.bias": False})
    assert dbg.status == "ready" and all(p.requires_grad for p in model.parameters())


class _Extras(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.extras = nn.Linear(4, 8), nn.Linear(8, 2), nn.ModuleList([nn.Linear(8, 8)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        for e in self.extras:
            h = e(h)
        return self.b(h)


@pytest.mark.parametrize("shown", [{"no_grad": ["extras.0"]}, {"detach": ["extras.0"]}])
def test_a_rerun_whose_shown_run_names_a_module_removed_since_still_runs(shown: dict[str, Any]) -> None:
    # Making the run shown again failed inside its own toggles (KeyError, or a refusal about toggles the
    # user did not ask for): the re-run is compared with the run shown, and says so.
    torch.manual_seed(0)
    model, x = _Extras(), torch.randn(16, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).sum())
    dbg.rerun(**shown)
    shown_index = dbg.current
    model.extras = nn.ModuleList()
    with torch.no_grad():
        model.a.weight.add_(0.1)
    graph = dbg.rerun(requires_grad={"b.weight": False})
    assert dbg.status == "ready" and dbg.baseline == shown_index
    assert any("changed since run" in note for note in graph.notes)


def test_a_run_made_again_twice_is_labelled_again_once() -> None:
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(16, 4)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).sum())
    dbg.rerun(requires_grad={"0.weight": False})
    for step in range(2):
        with torch.no_grad():
            model[0].bias.add_(0.1)
        again = dbg.baseline if step else None
        dbg.current = again if again is not None else dbg.current
        dbg.rerun(requires_grad={"2.bias": bool(step)})
    assert all(h["label"].count("again") <= 1 for h in dbg.history), [h["label"] for h in dbg.history]
    dbg.close()
