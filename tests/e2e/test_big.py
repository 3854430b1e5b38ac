"""A big graph in the browser: opens grouped by module, expands, finds a parameter, inspects it."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Lab
from tests.e2e.harness import open_and_run

BIG = """import torch, gradsight
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(*[nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True, norm_first=True)
                        for _ in range(190)])
loss = model(torch.randn(2, 16, 32)).pow(2).mean()
dbg = gradsight.debugger(loss, params=model)
print(len(dbg.graph))
dbg"""


def test_ten_thousand_node_graph_groups_expands_searches_and_inspects(lab: Lab, page: Page) -> None:
    open_and_run(page, lab.notebook("big.ipynb", [BIG]))
    widget = page.locator(".gradsight").first
    expect(widget).to_have_attribute("data-painted", "1", timeout=120_000)
    assert int(page.locator(".jp-OutputArea-output pre").first.inner_text().strip()) >= 10_000

    group = widget.locator('[data-gradsight="outline"] [data-group="150"]').first
    expect(group).to_have_attribute("aria-expanded", "false")
    group.click()
    expect(group).to_have_attribute("aria-expanded", "true", timeout=30_000)
    # the group's nodes are now listed (ops of a layer without parameters of their own are placed in it)
    expect(
        widget.locator('[data-gradsight="outline"] li:has(> [data-group="150"]) [data-node-id]').first
    ).to_be_attached()

    search = widget.locator('[data-gradsight="search"]').first
    search.fill("7.linear1.weight")
    result = widget.locator('[data-node-id="leaf:7.linear1.weight"]').first
    expect(result).to_be_visible(timeout=30_000)
    result.click()
    inspector = widget.locator('[data-gradsight="inspector"]')
    expect(inspector).to_have_attribute("data-node", "leaf:7.linear1.weight", timeout=30_000)
    expect(inspector.locator('[data-section="leaf"]')).to_contain_text("7.linear1.weight", timeout=30_000)
    expect(inspector.locator('[data-section="leaf"]')).to_contain_text("(64, 32)")
