"""Gradients in the browser: a runnable debugger's inspector, and a live debugger following a step."""

from __future__ import annotations

import os
import pathlib
import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import ARTIFACTS, Lab
from tests.e2e.harness import kernel_exec, open_and_run

MODEL = """import torch, gradsight
from torch import nn

class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(20, 16)
        self.layer2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.layer2(torch.relu(self.layer1(x)))

torch.manual_seed(0)
model = TwoLayer()
batch = torch.randn(8, 20)
target = torch.randn(8, 3)"""

README_SHOT = pathlib.Path(__file__).parents[2] / "docs" / "screenshot.png"

RUNNABLE = "dbg = gradsight.debugger(model, inputs=batch, loss=lambda out: (target - out).pow(2).sum())\ndbg"

LIVE = "gradsight.options.live_interval = 0.0\nlive = gradsight.debugger(model)\nlive"

TRAIN_STEP = """opt = torch.optim.SGD(model.parameters(), lr=0.01)
opt.zero_grad()
loss = (target - model(batch)).pow(2).sum()
loss.backward()
opt.step()"""


def number(text: str) -> float:
    match = re.search(r"-?\d+(\.\d+)?(e[-+]?\d+)?", text)
    assert match, text
    return float(match.group(0))


def test_runnable_debugger_shows_gradients_and_the_leaf_norm_pytorch_computes(lab: Lab, page: Page) -> None:
    open_and_run(page, lab.notebook("runnable.ipynb", [MODEL, RUNNABLE]))
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    widget.locator('[data-node-id="layer2/AddmmBackward0#0"]').click()
    inspector = widget.locator('[data-gradsight="inspector"]')
    expect(inspector).to_have_attribute("data-inspect-status", "done", timeout=30_000)
    grad_in = inspector.locator('[data-section="grad-in"]')
    expect(grad_in.locator('[data-stat="norm"]').first).to_be_visible()
    expect(grad_in.locator('[data-stat="mean"]').first).to_be_visible()
    expect(grad_in.locator("[data-histogram]").first).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    widget.screenshot(path=str(ARTIFACTS / "gradients.png"))
    if os.environ.get("GRADSIGHT_UPDATE_SCREENSHOT") == "1":  # the README's picture
        README_SHOT.parent.mkdir(exist_ok=True)
        widget.screenshot(path=str(README_SHOT))

    leaf = widget.locator('[data-node-id="leaf:layer1.weight"]')
    leaf.click()
    expect(inspector).to_have_attribute("data-node", "leaf:layer1.weight")
    expect(inspector).to_have_attribute("data-inspect-status", "done", timeout=30_000)
    shown = number(inspector.locator('[data-section="grad-in"] [data-stat="norm"]').first.inner_text())
    expected = float(
        kernel_exec(
            page,
            "model.zero_grad(set_to_none=True)\n"
            "(target - model(batch)).pow(2).sum().backward()\n"
            "print(repr(model.layer1.weight.grad.norm().item()))\n"
            "model.zero_grad(set_to_none=True)",
        ).strip()
    )
    assert abs(shown - expected) <= 1e-3 * abs(expected), (shown, expected)
    # the debugger left .grad alone
    assert kernel_exec(page, "print(model.layer1.weight.grad)").strip() == "None"


def test_live_debugger_updates_after_a_training_step(lab: Lab, page: Page) -> None:
    open_and_run(page, lab.notebook("live.ipynb", [MODEL, LIVE]))
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="message"]')).to_contain_text("waiting", ignore_case=True, timeout=60_000)
    expect(widget.locator("[data-node-name]")).to_have_count(0)
    kernel_exec(page, TRAIN_STEP)
    expect(widget.locator('[data-node-id="layer1/AddmmBackward0#0"]')).to_be_visible(timeout=30_000)
    expect(widget.locator('[data-run="step"]')).to_contain_text("1")
    expect(widget.locator('[data-node-id="layer1/AddmmBackward0#0"]')).to_have_attribute("data-executed", "true")
    kernel_exec(page, TRAIN_STEP)
    expect(widget.locator('[data-run="step"]')).to_contain_text("2", timeout=30_000)
    kernel_exec(page, "live.close()")
