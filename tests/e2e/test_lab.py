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
    # the graph is one Tab stop, on the clicked node: Tab leaves the graph, Shift+Tab comes back
    node(page, "SinBackward0").focus()  # as the click does in chromium (not if the inspector took it)
    page.keyboard.press("Tab")
    assert not page.evaluate("() => document.activeElement?.classList.contains('gs-node') ?? false")
    page.keyboard.press("Shift+Tab")
    expect(widget.locator(":focus")).to_have_attribute("data-node-name", "SinBackward0")


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
    # the outline listing the 2,002 nodes is one Tab stop: it follows the arrow keys (Up: the entry
    # above the leaf), one Tab leaves the outline, and Shift+Tab comes back to that entry
    on_node = "() => document.activeElement?.hasAttribute('data-node-id') ?? false"
    page.keyboard.press("ArrowUp")
    expect(widget.locator(":focus")).to_have_attribute("data-node-name", "MulBackward0")
    page.keyboard.press("Tab")
    assert not page.evaluate(on_node)
    page.keyboard.press("Shift+Tab")
    expect(widget.locator(":focus")).to_have_attribute("data-node-name", "MulBackward0")


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


BIG_CHAIN = """x = torch.ones(3, requires_grad=True)
y = x
for _ in range(2100):  # past big-view.ts's GROUP_THRESHOLD: drawn on a canvas with palette.ts's colours
    y = y * 1.001
gradsight.debugger(y.sum())"""

# of a canvas's opaque pixels (0-255 luminance): how many, their mean, how many near white and near black
CANVAS_PIXELS = """el => {
    const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
    let opaque = 0, sum = 0, white = 0, black = 0;
    for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] === 0) continue;
        const l = 0.2126 * d[i] + 0.7152 * d[i + 1] + 0.0722 * d[i + 2];
        opaque++; sum += l;
        if (l > 230) white++; else if (l < 60) black++;
    }
    return {opaque, mean: opaque ? sum / opaque : -1, white, black}; }"""
# luminance of an element's computed `fill`, composed onto a canvas so that any CSS colour syntax reads the same
FILL = """el => {
    const c = document.createElement('canvas').getContext('2d');
    c.fillStyle = getComputedStyle(el).fill;
    c.fillRect(0, 0, 1, 1);
    const [r, g, b] = c.getImageData(0, 0, 1, 1).data;
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; }"""


def test_big_graph_opened_in_an_already_dark_lab_is_drawn_dark(lab: Lab, page: Page) -> None:
    # The theme is dark before the page loads (as after a reload): the view renders into an element the
    # notebook attaches afterwards, and no theme change follows to correct colours read while detached.
    themes = lab.root / ".settings" / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    themes.write_text('{"theme": "JupyterLab Dark"}')
    try:
        open_and_run(page, lab.notebook("dark_big.ipynb", [IMPORTS, "%load_ext gradsight", SEED_SIN, BIG_CHAIN]))
        assert page.evaluate("() => document.body.dataset.jpThemeLight") == "false"
        small = page.locator(".gradsight").filter(has=page.locator('[data-node-name="SinBackward0"]'))
        big = page.locator(".gradsight").filter(has=page.locator('canvas[data-gradsight="minimap"]'))
        expect(small).to_have_attribute("data-painted", "1", timeout=90_000)
        expect(big).to_have_attribute("data-painted", "1", timeout=90_000)
        page.wait_for_timeout(500)  # a frame or two after the first paint: what the user keeps seeing
        pixels = big.locator('canvas[data-gradsight="canvas"]').evaluate(CANVAS_PIXELS)
        assert pixels["opaque"] > 1000 and pixels["white"] < 0.1 * pixels["opaque"] < pixels["black"], pixels
        assert pixels["mean"] < 100, pixels
        minimap = big.locator('canvas[data-gradsight="minimap"]').evaluate(CANVAS_PIXELS)
        assert minimap["opaque"] > 0 and minimap["mean"] < 100 and minimap["white"] == 0, minimap
        svg_box = float(small.locator('[data-node-name="SinBackward0"] .gs-box').first.evaluate(FILL))
        assert svg_box < 60, svg_box
    finally:
        themes.write_text('{"theme": "JupyterLab Light"}')  # the next tests' pages open light


def _luminance(css: str) -> float:
    parts = [float(p) for p in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
    return 0.2126 * parts[0] + 0.7152 * parts[1] + 0.0722 * parts[2]
