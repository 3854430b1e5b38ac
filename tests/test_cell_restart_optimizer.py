"""A ``%%gradsight`` cell that steps an optimizer: its re-runs start from the first state in the optimizer's
own objects, and give those very objects back (``cell_state_copies``), so a user's ``g = opt.param_groups[0]``
or ``m = opt.state[w]['exp_avg']`` (an LR scheduler reads the groups through the optimizer) stays live."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

from gradsight._capture.cell import cell_names
from gradsight._capture.cell_start import FirstState

CELL = "opt.zero_grad()\nloss = model(x).pow(2).sum()\nloss.backward()\nopt.step()\nsched.step()"
SETUP = (
    "torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nx = torch.randn(8, 4)\n"
    "opt = torch.optim.Adam(model.parameters(), lr=0.1)\n"
    "sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)\n"
    "opt.zero_grad(); model(x).sum().backward(); opt.step(); sched.step()"  # state before the first run
)


def test_a_rerun_steps_from_the_first_state_in_the_users_own_groups_and_state_tensors(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(SETUP, store_history=False)
    opt, w = shell.user_ns["opt"], shell.user_ns["model"].weight
    first_avg, first_lr = opt.state[w]["exp_avg"].clone(), opt.param_groups[0]["lr"]
    dbg = shell.run_cell("%%gradsight\n" + CELL, store_history=False).result
    group, avg = opt.param_groups[0], opt.state[w]["exp_avg"]
    seen: list[tuple[bool, bool, torch.Tensor, float, float]] = []

    def look(o: Any, *_: object) -> None:  # what the re-run's opt.step() starts from
        entry = o.state[w]
        seen.append((o.param_groups[0] is group, entry["exp_avg"] is avg, entry["exp_avg"].clone(),
                     float(entry["step"]), o.param_groups[0]["lr"]))  # fmt: skip

    handle = opt.register_step_pre_hook(look)
    try:
        dbg.rerun()
    finally:
        handle.remove()
    ((same_group, same_avg, started_avg, step, lr),) = seen
    assert same_group and same_avg  # load_state_dict made new ones
    assert torch.equal(started_avg, first_avg) and step == 1.0 and lr == first_lr  # the first run's start


def test_a_rerun_gives_back_the_users_own_groups_and_state_tensors_with_their_values_and_counters() -> None:
    # FirstState alone: in a shell, NamespaceGuard (around it) also puts the optimizer back, still with
    # load_state_dict (a change there is proposed with this test).
    from torch import nn

    torch.manual_seed(0)
    ns: dict[str, Any] = {"torch": torch, "nn": nn}
    exec(SETUP, ns)
    state = FirstState(CELL, ns, cell_names(CELL)[0], budget=1 << 20)
    exec(CELL, ns)  # the first run
    state.settle()
    opt, w = ns["opt"], ns["model"].weight
    group, params, avg = opt.param_groups[0], opt.param_groups[0]["params"], opt.state[w]["exp_avg"]
    values = {k: v.clone() for k, v in opt.state[w].items()}
    versions = {k: v._version for k, v in opt.state[w].items()}
    lr = group["lr"]
    with state.started(ns, cell_names(CELL)[0]) as notes:
        exec(CELL, dict(ns))
    assert notes == []
    assert opt.param_groups[0] is group and group["params"] is params and opt.state[w]["exp_avg"] is avg
    assert group["lr"] == lr and all(torch.equal(opt.state[w][k], v) for k, v in values.items())
    assert {k: v._version for k, v in opt.state[w].items()} == versions
    ns["sched"].step()  # the scheduler reads the groups through the optimizer: the user's dict moves
    assert group["lr"] == pytest.approx(lr / 2)


def test_a_rerun_leaves_the_users_group_dicts_and_state_tensors_in_the_optimizer(shell: InteractiveShell) -> None:
    shell.run_cell(SETUP, store_history=False)
    dbg = shell.run_cell("%%gradsight\n" + CELL, store_history=False).result
    opt, w = shell.user_ns["opt"], shell.user_ns["model"].weight
    group, avg, version = opt.param_groups[0], opt.state[w]["exp_avg"], opt.state[w]["exp_avg"]._version
    values = avg.clone()
    dbg.rerun()
    assert opt.param_groups[0] is group and opt.state[w]["exp_avg"] is avg and avg._version == version
    assert torch.equal(avg, values)


COUNTING = """
class Counting(torch.optim.SGD):  # a subclass with state of its own in its state_dict (a warmup counter)
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.k = 0
        self.register_step_post_hook(lambda o, args, kwargs: setattr(o, "k", o.k + 1))  # (no step override:
        # a subclass's step calling SGD's wrapped step runs the step hooks twice)

    def state_dict(self):
        return {**super().state_dict(), "k": self.k}

    def load_state_dict(self, d):
        d = dict(d)
        self.k = d.pop("k")
        super().load_state_dict(d)

torch.manual_seed(0)
model = nn.Linear(4, 2)
x = torch.randn(8, 4)
opt = Counting(model.parameters(), lr=0.1, momentum=0.9)
"""


def test_an_optimizer_subclass_with_its_own_state_goes_through_its_load_state_dict(shell: InteractiveShell) -> None:
    """Its own keys are restored by its load_state_dict only: re-runs start from, and give back, them too."""
    shell.run_cell(COUNTING, store_history=False)
    dbg = shell.run_cell("%%gradsight\nopt.zero_grad()\nmodel(x).pow(2).sum().backward()\nopt.step()\nk = opt.k",
                         store_history=False).result  # fmt: skip
    opt = shell.user_ns["opt"]
    assert opt.k == 1
    seen: list[int] = []
    handle = opt.register_step_pre_hook(lambda o, *_: seen.append(o.k))
    dbg.rerun()
    dbg.rerun()
    handle.remove()
    assert seen == [0, 0]  # each re-run starts from the first run's start
    assert opt.k == 1  # and gives back what the user had
