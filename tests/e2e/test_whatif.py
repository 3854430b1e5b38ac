"""What-if debugging in the browser: toggle, re-run, see the diff; no_grad; errors; a cell re-run."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Lab
from tests.e2e.harness import kernel_exec, open_and_run

SETUP = """import torch, gradsight
from torch import nn

class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(1000, 100)
        self.relu = nn.ReLU()
        self.layer2 = nn.Linear(100, 10)

    def forward(self, x):
        return self.layer2(self.relu(self.layer1(x)))

torch.manual_seed(0)
model = TinyModel()
batch = torch.randn(16, 1000)
expected_output = torch.randn(16, 10)
state = {"fail": False}

def loss(out):
    if state["fail"]:
        raise ZeroDivisionError("the loss failed on purpose")
    return (expected_output - out).pow(2).sum()

dbg = gradsight.debugger(model, inputs=batch, loss=loss)
dbg"""


def rerun(page: Page) -> None:
    widget = page.locator(".gradsight").first
    widget.locator('[data-action="rerun"]').first.click()
    expect(widget.locator('[data-gradsight="status"]')).not_to_have_text("running", timeout=60_000)


def test_toggle_requires_grad_rerun_diff_no_grad_and_error(lab: Lab, page: Page) -> None:
    open_and_run(page, lab.notebook("whatif.ipynb", [SETUP]))
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    leaf = widget.locator('.gs-node[data-node-id="leaf:layer1.weight"]')
    expect(leaf).to_have_count(1)

    # freeze layer1.weight, re-run: the leaf is gone and the diff lists it
    box = widget.locator('[data-toggle="requires-grad"][data-leaf="layer1.weight"]')
    expect(box).to_be_checked()
    box.click()
    expect(box).not_to_be_checked()
    rerun(page)
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready")
    expect(leaf).to_have_count(0)
    expect(widget.locator('[data-diff="lost-grad"]')).to_contain_text("layer1.weight")
    assert kernel_exec(page, "print(model.layer1.weight.requires_grad)").strip() == "True"  # restored

    # the whole step under no_grad: no graph, and the view explains why
    widget.locator('[data-toggle="no-grad"]').click()
    rerun(page)
    message = widget.locator('[data-gradsight="message"]')
    expect(message).to_contain_text("no_grad")
    expect(widget.locator(".gs-node")).to_have_count(0)

    # back to a graph, then a re-run whose loss raises: the error shows and the graph stays
    widget.locator('[data-toggle="no-grad"]').click()
    rerun(page)
    expect(widget.locator(".gs-node").first).to_be_visible()
    nodes = widget.locator(".gs-node").count()
    kernel_exec(page, "state['fail'] = True")
    rerun(page)
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("error")
    expect(widget.locator('[data-gradsight="error"]')).to_contain_text("ZeroDivisionError")
    expect(widget.locator(".gs-node")).to_have_count(nodes)
    assert kernel_exec(page, "print(1 + 1)").strip() == "2"  # the kernel is fine


CELL = """%%gradsight
input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out1 = torch.sin(a)
out3 = 2 * out1 * input1 + 1"""


def test_cell_reruns_from_the_view_and_the_users_tensors_keep_requires_grad(lab: Lab, page: Page) -> None:
    cells = ["import math, torch\na = torch.linspace(0., 1., 25, requires_grad=True)", "%load_ext gradsight", CELL]
    open_and_run(page, lab.notebook("cell_whatif.ipynb", cells))
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    expect(widget.locator('.gs-node[data-node-id="leaf:a"]')).to_have_count(1)
    widget.locator('[data-toggle="requires-grad"][data-leaf="a"]').click()
    rerun(page)
    expect(widget.locator('.gs-node[data-node-id="leaf:a"]')).to_have_count(0)
    expect(widget.locator('.gs-node[data-node-id="leaf:input1"]')).to_have_count(1)
    expect(widget.locator('[data-diff="lost-grad"]')).to_contain_text("a")
    out = kernel_exec(page, "print(a.requires_grad, input1.requires_grad, out3.grad_fn is not None)")
    assert out.strip() == "True True True"
