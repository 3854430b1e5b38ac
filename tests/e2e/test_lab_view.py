"""The view as a JupyterLab user meets it: keys pressed in it, a narrow notebook column, a kernel restart."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.conftest import Lab
from tests.e2e.harness import open_and_run

SETUP = """import torch, gradsight
from torch import nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 1))
batch = torch.randn(4, 20)
dbg = gradsight.debugger(model, inputs=batch, loss=lambda out: out.pow(2).mean())
dbg"""

CELLS_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets.map((c) => c.model.type).join(",")"""


def _open(lab: Lab, page: Page, name: str):  # type: ignore[no-untyped-def]
    open_and_run(page, lab.notebook(name, [SETUP, "x = 1", "y = 2"]))
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'",
        timeout=60_000,
    )
    return widget


def test_letter_keys_on_a_focused_node_or_box_leave_the_notebook_alone(lab: Lab, page: Page) -> None:
    _keys_stay_in_the_view(_open(lab, page, "view_keys.ipynb"), page)


def test_letter_keys_leave_notebook7_alone_too(notebook7: Lab, page: Page) -> None:
    # Notebook 7 runs its shortcuts in the capture phase, before the view's root sees the key
    _keys_stay_in_the_view(_open(notebook7, page, "view_keys_nb7.ipynb"), page)


def _keys_stay_in_the_view(widget, page: Page) -> None:  # type: ignore[no-untyped-def]
    cells = page.evaluate(CELLS_JS)
    assert cells == "code,code,code"
    node = widget.locator('.gs-node[data-node-id="leaf:0.weight"]')
    node.click()
    expect(node).to_be_focused()
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.mode") == "command"
    # d d deletes a cell, m makes it Markdown, a / b insert one, z undoes: command mode's shortcuts
    for key in ["d", "d", "m", "a", "b", "x", "Shift+M"]:
        page.keyboard.press(key)
    page.wait_for_timeout(500)
    assert page.evaluate(CELLS_JS) == cells
    expect(node).to_be_focused()
    box = widget.locator('[data-toggle="requires-grad"][data-leaf="0.weight"]')
    box.focus()
    page.keyboard.press("d")
    page.keyboard.press("d")
    page.keyboard.press(" ")  # the box's own key still works
    page.wait_for_timeout(500)
    assert page.evaluate(CELLS_JS) == cells
    expect(box).not_to_be_checked()
    expect(widget.locator('[data-action="rerun"]')).to_have_text("Re-run with 1 change")


def test_a_narrow_column_scrolls_the_tables_not_the_view(lab: Lab, page: Page) -> None:
    page.set_viewport_size({"width": 520, "height": 900})
    widget = _open(lab, page, "view_narrow.ipynb")
    modules = widget.locator('[data-toggles-group="modules"]')
    right = widget.evaluate("el => el.getBoundingClientRect().right")
    box = modules.locator('[data-scope-toggle="detach"][data-module="2"]')
    expect(box).to_have_count(1)
    fits = modules.evaluate("el => [el.getBoundingClientRect().right, el.scrollWidth > el.clientWidth]")
    assert fits[0] <= right + 0.5, (fits, right)  # the table's box stays inside the view
    assert fits[1], "the module table is wider than the column: it scrolls in its own box"
    box.focus()
    page.keyboard.press(" ")
    expect(box).to_be_checked()
    assert widget.evaluate("el => el.scrollLeft") == 0  # the view itself never scrolled sideways
    assert box.evaluate("el => el.getBoundingClientRect().right") <= right + 0.5  # scrolled into view in its box


def test_after_a_kernel_restart_the_view_says_so_and_offers_no_action(lab: Lab, page: Page) -> None:
    widget = _open(lab, page, "view_restart.ipynb")
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    status = widget.locator('[data-gradsight="status"]')
    expect(status).to_have_text("error", timeout=30_000)
    expect(widget.locator('[data-gradsight="error"]')).to_contain_text(
        "the kernel was restarted: re-run the cell that made this debugger"
    )
    expect(widget.locator('[data-action="rerun"]')).to_be_disabled()
    expect(widget.locator('[data-toggle="requires-grad"][data-leaf="0.weight"]')).to_be_disabled()
    widget.locator('.gs-node[data-node-id="leaf:0.bias"]').click()
    inspector = widget.locator('[data-gradsight="inspector"]')
    expect(inspector).to_have_attribute("data-inspect-status", "error")
    expect(inspector.locator('[data-inspect-status="error"]').first).to_contain_text("the kernel was restarted")


def test_the_rerun_button_counts_no_change_once_the_rerun_made_it(lab: Lab, page: Page) -> None:
    widget = _open(lab, page, "view_rerun_count.ipynb")
    button = widget.locator('[data-action="rerun"]')
    widget.locator('[data-toggle="requires-grad"][data-leaf="0.weight"]').click()
    expect(button).to_have_text("Re-run with 1 change")
    button.click()
    shown = widget.locator('[data-gradsight="history"] select[data-action="current"]')
    expect(shown).to_have_value("1", timeout=60_000)
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready")
    expect(button).to_have_text("Re-run")  # it kept "Re-run with 1 change" for the change just made
    expect(widget.locator('[data-toggle="requires-grad"][data-leaf="0.weight"]')).not_to_be_checked()
    widget.locator('[data-toggle="requires-grad"][data-leaf="2.weight"]').click()
    expect(button).to_have_text("Re-run with 1 change")
