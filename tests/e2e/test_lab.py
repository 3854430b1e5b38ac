"""The real widget in real JupyterLab 4, driven through chromium: the seed's examples end to end."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.conftest import ARTIFACTS, Lab
from tests.e2e.harness import kernel_exec, open_and_run

SEED_SIN = """%%gradsight
input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
out3 = 2 * torch.sin(input1) + 1"""

TINY_MODEL = """class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(1000, 100)
        self.relu = nn.ReLU()
        self.layer2 = nn.Linear(100, 10)

    def forward(self, x):
        return self.layer2(self.relu(self.layer1(x)))

model = TinyModel()
batch = torch.randn(16, 1000)
expected_output = torch.randn(16, 10)
output = model(batch)
loss = (expected_output - output).pow(2).sum()
dbg = gradsight.debugger(loss, params=model)
dbg"""

IMPORTS = "import math, torch, gradsight\nfrom torch import nn"


def node(page: Page, name: str, nth: int = 0):  # type: ignore[no-untyped-def]
    return page.locator(f'.gradsight [data-node-name="{name}"]').nth(nth)


def test_seed_cell_magic_click_sin_shows_saved_self(lab: Lab, page: Page) -> None:
    url = lab.notebook("seed_sin.ipynb", [IMPORTS, "%load_ext gradsight", SEED_SIN])
    open_and_run(page, url)
    widget = page.locator(".gradsight").first
    expect(widget).to_be_visible(timeout=60_000)
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready")
    node(page, "SinBackward0").click()
    inspector = widget.locator('[data-gradsight="inspector"]')
    saved = inspector.locator('[data-section="saved"] [data-saved-name="_saved_self"]')
    expect(saved).to_be_visible()
    expect(saved).to_contain_text("(25,)")
    # the click reached Python: the widget's selection is the node's id
    expect(widget.locator('.gs-node.gs-selected[data-node-name="SinBackward0"]')).to_have_count(1)


def test_seed_cell_with_backward_shows_the_gradient_into_sin(lab: Lab, page: Page) -> None:
    cell = SEED_SIN + "\nout3.sum().backward()"
    open_and_run(page, lab.notebook("seed_backward.ipynb", [IMPORTS, "%load_ext gradsight", cell]))
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    node(page, "SinBackward0").click()
    inspector = widget.locator('[data-gradsight="inspector"]')
    expect(inspector).to_have_attribute("data-inspect-status", "done", timeout=30_000)
    norm = inspector.locator('[data-section="grad-in"] [data-stat="norm"]').first
    expect(norm).to_be_visible()
    # d(2·sin + 1)/d(sin) = 2 for each of the 25 values: the norm is 2·√25 = 10
    assert float(re.search(r"-?\d+(\.\d+)?", norm.inner_text()).group(0)) == 10.0  # type: ignore[union-attr]
    expect(inspector.locator('[data-section="grad-in"] [data-histogram]').first).to_be_visible()


def test_debugger_of_tiny_model_leaf_shows_parameter_name(lab: Lab, page: Page) -> None:
    url = lab.notebook("tiny_model.ipynb", [IMPORTS, TINY_MODEL])
    open_and_run(page, url)
    widget = page.locator(".gradsight").first
    expect(widget).to_be_visible(timeout=60_000)
    leaf = page.locator('.gradsight [data-node-id="leaf:layer1.weight"]')
    expect(leaf).to_have_attribute("data-node-name", "AccumulateGrad")
    leaf.click()
    section = widget.locator('[data-gradsight="inspector"] [data-section="leaf"]')
    expect(section).to_contain_text("layer1.weight")
    expect(section).to_contain_text("(100, 1000)")
    assert kernel_exec(page, "print(dbg.selected)").strip() == "leaf:layer1.weight"
    # Python -> view: selecting from the kernel updates the inspector
    kernel_exec(page, "dbg.select(dbg.graph.find('layer2.bias')[0].id)")
    expect(section).to_contain_text("layer2.bias")
    ARTIFACTS.mkdir(exist_ok=True)
    node(page, "AddmmBackward0").click()
    widget.screenshot(path=str(ARTIFACTS / "tiny_model.png"))


def test_two_thousand_node_chain_displays(lab: Lab, page: Page) -> None:
    chain = (
        "x = torch.randn(3, requires_grad=True)\ny = x\n"
        "for _ in range(2000):\n    y = y * 1.001\ngradsight.debugger(y.sum())"
    )
    open_and_run(page, lab.notebook("chain.ipynb", [IMPORTS, chain]))
    widget = page.locator(".gradsight").first
    expect(widget).to_be_visible(timeout=60_000)
    expect(widget.locator("[data-node-name]")).to_have_count(2002, timeout=60_000)
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready")
    leaf = node(page, "AccumulateGrad")  # far below the fitted view: reach it by keyboard
    leaf.focus()
    page.keyboard.press("Enter")
    expect(widget.locator('[data-gradsight="inspector"] [data-section="leaf"]')).to_be_visible()


def test_no_graph_is_explained_in_the_view(lab: Lab, page: Page) -> None:
    cell = "a = torch.ones(2, 3, requires_grad=True)\nwith torch.no_grad():\n    c = a + a\ngradsight.debugger(c)"
    open_and_run(page, lab.notebook("nograd.ipynb", [IMPORTS, cell]))
    message = page.locator('.gradsight [data-gradsight="message"]').first
    expect(message).to_contain_text("requires_grad=False", timeout=60_000)
    expect(message).to_contain_text("no_grad")


def test_view_follows_the_dark_theme(lab: Lab, page: Page) -> None:
    open_and_run(page, lab.notebook("theme.ipynb", [IMPORTS, "%load_ext gradsight", SEED_SIN]))
    widget = page.locator(".gradsight").first
    expect(widget).to_be_visible(timeout=60_000)
    light = widget.evaluate("el => getComputedStyle(el).backgroundColor")
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function(
        "(before) => getComputedStyle(document.querySelector('.gradsight')).backgroundColor !== before",
        arg=light,
        timeout=30_000,
    )
    dark = widget.evaluate("el => getComputedStyle(el).backgroundColor")
    assert _luminance(dark) < _luminance(light), (light, dark)


def _luminance(css: str) -> float:
    parts = [float(p) for p in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
    return 0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2]
