"""A what-if re-run that leaves no graph: the graph's message names the toggles that cut it, as
graph.missing and why() do, instead of advising the user to change their code."""

from __future__ import annotations

from typing import Any

import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn

import gradsight as gs

USER_ADVICE = "Set requires_grad=True on an input"
CELL = """input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out1 = torch.sin(input1)
out3 = 2 * out1 + 1
"""


def run(sh: InteractiveShell, body: str) -> Any:
    return sh.run_cell("%%gradsight\n" + body, store_history=False).result


def test_a_detach_that_empties_the_graph_is_named_in_its_message(shell: InteractiveShell) -> None:
    dbg = run(shell, CELL)
    message = dbg.rerun(detach=["out1"]).message
    lines = message.split("\n")
    assert lines[0].startswith("This re-run's toggles (detach(out1))") and "not your code" in lines[0]
    assert "out1 has no graph: this re-run's detach toggle detaches it." in lines
    assert USER_ADVICE not in message and "a leaf tensor you created" not in message
    assert any(line.startswith("out3 ") for line in lines) and any(line.startswith("input1 ") for line in lines)


def test_a_requires_grad_toggle_that_empties_the_graph_is_named_in_its_message(shell: InteractiveShell) -> None:
    dbg = run(shell, CELL)
    message = dbg.rerun(requires_grad={"input1": False}).message
    assert "input1.requires_grad=False" in message.split("\n")[0]
    assert "input1 has requires_grad=False: this re-run's requires_grad toggle set it off." in message
    assert USER_ADVICE not in message


def test_without_toggles_the_message_still_advises_on_the_code(shell: InteractiveShell) -> None:
    shell.run_cell("w = torch.randn(3)", store_history=False)
    dbg = run(shell, "h = w * 2")
    assert USER_ADVICE in dbg.graph.message and "toggle" not in dbg.graph.message
    assert USER_ADVICE in dbg.rerun().message  # a plain re-run: the code's own doing still


def test_a_runnables_toggle_worded_message_is_kept_as_it_is() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda o: o.sum())
    message = dbg.rerun(detach=["2"]).message
    assert message.startswith("No graph: with this re-run's toggles (detach(2))") and "\n" not in message
