"""The other front ends the README names, in chromium: Jupyter Notebook 7 and marimo.

Each shows a runnable debugger of a two-layer model; a click on layer2's AddmmBackward0 sends an
``inspect`` request (a custom message) and the reply's statistics and preview values (a float32
binary buffer) must be what PyTorch computes for the gradient into that node. Under marimo the
view also follows marimo's light and dark themes (SVG graph and canvas), source lines name
marimo's cells as ``cell <id>:<line>``, a live debugger follows the training step of a later cell
(marimo has no IPython, so no ``post_run_cell``), and what-if toggles re-run from the view.
"""

from __future__ import annotations

import json
import re
import textwrap

from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import Lab, Marimo
from tests.e2e.harness import kernel_exec, open_and_run
from tests.e2e.test_gradients import MODEL, RUNNABLE, number

NODE = "layer2/AddmmBackward0#0"
IN_A_BOX = """import ipywidgets
ipywidgets.HBox([gradsight.debugger(model, inputs=batch, loss=lambda out: out.sum()), ipywidgets.Label("beside")])"""

# The gradient into layer2's addmm is d(loss)/d(model output), by plain autograd (no gradsight).
PYTORCH_GRAD = """_out = model(batch)
_g = torch.autograd.grad((target - _out).pow(2).sum(), _out)[0]
_expected = {"norm": _g.norm().item(), "min": _g.min().item(), "max": _g.max().item(), "cell01": _g[0, 1].item()}"""


def _indent(code: str) -> str:
    return textwrap.indent(code, "    ")


MARIMO_NOTEBOOK = f"""import marimo

app = marimo.App()


@app.cell
def _():
    import marimo as mo
    return (mo,)


@app.cell
def _():
{_indent(MODEL)}
    return batch, gradsight, model, target, torch


@app.cell
def _(batch, gradsight, mo, model, target):
    dbg = gradsight.debugger(model, inputs=batch, loss=lambda out: (target - out).pow(2).sum())
    view = mo.ui.anywidget(dbg)
    view
    return dbg, view


@app.cell
def _(batch, json, mo, model, target, torch):
{_indent(PYTORCH_GRAD)}
    mo.Html(f"<pre id='pytorch-grad'>{{json.dumps(_expected)}}</pre>")
    return


@app.cell
def _(dbg, mo, view):
    _shown = f"selected={{view.value['selected']}} dbg.selected={{dbg.selected}} error={{dbg.error!r}}"
    mo.Html(f"<pre id='python-side'>{{_shown}}</pre>")
    return


@app.cell
def _():
    import json
    return (json,)


if __name__ == "__main__":
    app.run()
"""


def check_inspector_matches_pytorch(widget: Locator, expected: dict[str, float]) -> None:
    """The inspector shows ``NODE``'s incoming gradient: statistics and a preview cell as PyTorch has them."""
    inspector = widget.locator('[data-gradsight="inspector"]')
    expect(inspector).to_have_attribute("data-node", NODE)
    expect(inspector).to_have_attribute("data-inspect-status", "done", timeout=30_000)
    grad_in = inspector.locator('[data-section="grad-in"]')
    expect(grad_in.locator("[data-histogram]").first).to_be_visible()
    shown = {
        stat: number(grad_in.locator(f'[data-stat="{stat}"]').first.inner_text()) for stat in ("norm", "min", "max")
    }
    # the preview's values arrive as a binary buffer: read cell [0, 1] with the keyboard
    canvas = grad_in.locator("canvas[data-preview]").first
    canvas.focus()
    canvas.press("ArrowRight")  # shows the cursor on [0, 0]
    canvas.press("ArrowRight")  # moves it to [0, 1]
    readout = grad_in.locator("[data-preview-readout]").first
    expect(readout).to_have_attribute("data-cell", "0,1")
    text = readout.inner_text()
    assert text.startswith("[0, 1] = "), text
    shown["cell01"] = number(text.split("=")[-1])
    for key, value in expected.items():  # shown with 4 significant digits (3 in exponent form)
        assert abs(shown[key] - value) <= 5e-3 * abs(value), (key, shown[key], value, shown)


def test_notebook7_runnable_debugger_inspects_gradients_as_pytorch_computes(notebook7: Lab, page: Page) -> None:
    open_and_run(page, notebook7.notebook("hosts_nb7.ipynb", [MODEL, RUNNABLE, IN_A_BOX]))
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"  # Notebook 7's page, not Lab's
    widget = page.locator(".gradsight").first
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    expect(widget.locator("[data-node-name]")).to_have_count(12)
    widget.locator(f'[data-node-id="{NODE}"]').click()
    expected = json.loads(kernel_exec(page, PYTORCH_GRAD + "\nimport json; print(json.dumps(_expected))"))
    check_inspector_matches_pytorch(widget, expected)
    # a view sized by its content (an ipywidgets HBox) keeps its width: size containment made it 2 px
    boxed = page.locator(".widget-hbox .gradsight").first
    expect(boxed.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=60_000)
    box = boxed.bounding_box()
    assert box and box["width"] > 400, box
    assert kernel_exec(page, "print(dbg.selected)").strip() == NODE  # the click reached Python
    assert kernel_exec(page, "print(repr(dbg.error))").strip() == "''"
    # a focused node's arrow keys are the view's (Notebook 7 binds them in the capture phase), every
    # other key stays the notebook's: Shift+Enter still runs the cell and moves to the next one
    active = "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex"
    node = widget.locator(f'[data-node-id="{NODE}"]')
    node.focus()
    cell = page.evaluate(active)
    node.press("ArrowDown")
    expect(widget.locator(":focus")).to_have_attribute("data-node-id", "leaf:layer2.bias")  # its first input
    assert page.evaluate(active) == cell
    # a <select>'s arrows are the browser's own: they change the layout, not the active cell
    direction = widget.locator('select[data-action="direction"]')
    direction.focus()
    direction.press("ArrowDown")
    expect(direction).not_to_have_value("TB")
    assert page.evaluate(active) == cell
    node.focus()
    widget.locator(":focus").press("Shift+Enter")
    page.wait_for_function(f"() => ({active})() === {cell + 1}", timeout=30_000)


def test_marimo_anywidget_inspects_gradients_as_pytorch_computes(marimo: Marimo, page: Page) -> None:
    page.goto(marimo.notebook("hosts_marimo.py", MARIMO_NOTEBOOK))
    widget = page.locator(".gradsight").first  # inside marimo's shadow root: Playwright's CSS pierces it
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready", timeout=90_000)
    expect(widget.locator("[data-node-name]")).to_have_count(12)
    python_side = page.locator("#python-side")
    expect(python_side).to_have_text("selected= dbg.selected= error=''", timeout=30_000)
    widget.locator(f'[data-node-id="{NODE}"]').click()
    expected = json.loads(page.locator("#pytorch-grad").inner_text())
    check_inspector_matches_pytorch(widget, expected)
    # the selection reached Python (dbg) and marimo's value of the element; cells reading it re-ran
    expect(python_side).to_have_text(f"selected={NODE} dbg.selected={NODE} error=''", timeout=30_000)
    # where the op ran: marimo's cell and the line within it (not marimo's temp file __marimo__cell_<id>_.py)
    source = widget.locator('[data-gradsight="inspector"] [data-field="source"]').inner_text()
    assert re.fullmatch(rf"cell \w+:{FORWARD_LINE}\s+{re.escape(FORWARD)}", source), source


# the forward line that runs layer2's addmm, and its line in MODEL's cell
FORWARD = "return self.layer2(torch.relu(self.layer1(x)))"
FORWARD_LINE = MODEL.splitlines().index("        " + FORWARD) + 1

THEME_NOTEBOOK = f"""import marimo

app = marimo.App()


@app.cell
def _():
{_indent(MODEL)}
    import marimo as mo
    return batch, gradsight, mo, model, target, torch


@app.cell
def _(batch, gradsight, mo, model, target):
    small = mo.ui.anywidget(gradsight.debugger(model, inputs=batch, loss=lambda out: (target - out).pow(2).sum()))
    small
    return


@app.cell
def _(gradsight, mo, torch):
    _x = torch.ones(3, requires_grad=True)
    _y = _x
    for _ in range(2100):  # past big-view.ts's GROUP_THRESHOLD: drawn on a canvas with palette.ts's colours
        _y = _y * 1.001
    big = mo.ui.anywidget(gradsight.debugger(_y.sum()))
    big
    return


if __name__ == "__main__":
    app.run()
"""

# luminance (0-255) of an element's computed colour property, composed onto a canvas so that any CSS
# colour syntax (rgb(), color(srgb ...)) reads the same; transparent colours fail the opacity check
LUMINANCE = """([el, prop]) => {
    const c = document.createElement('canvas').getContext('2d');
    c.fillStyle = getComputedStyle(el)[prop];
    c.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = c.getImageData(0, 0, 1, 1).data;
    return a === 255 ? 0.2126 * r + 0.7152 * g + 0.0722 * b : -1; }"""
# the minimap's backdrop: palette.bg2 as big-view.ts read it (readPalette) for the canvas
MINIMAP = """el => {
    const [r, g, b, a] = el.getContext('2d').getImageData(2, 2, 1, 1).data;
    return a === 255 ? 0.2126 * r + 0.7152 * g + 0.0722 * b : -1; }"""


def _luminance(el: Locator, prop: str) -> float:
    value = float(el.evaluate(f"(el, prop) => ({LUMINANCE})([el, prop])", prop))
    assert value >= 0, f"{prop} is not an opaque colour"
    return value


def test_marimo_view_follows_marimos_dark_and_light_themes(marimo: Marimo, page: Page) -> None:
    # theme=system: marimo follows the browser's colour scheme, so one page sees both themes and the switch
    page.emulate_media(color_scheme="dark")
    page.goto(marimo.notebook("hosts_marimo_theme.py", THEME_NOTEBOOK) + "&theme=system")
    small = page.locator(".gradsight").filter(has=page.locator(f'[data-node-id="{NODE}"]'))
    big = page.locator(".gradsight").filter(has=page.locator('canvas[data-gradsight="minimap"]'))
    expect(small).to_have_attribute("data-painted", "1", timeout=90_000)
    expect(big).to_have_attribute("data-painted", "1", timeout=90_000)
    assert "dark" in page.evaluate("() => document.body.className")
    node = small.locator(f'[data-node-id="{NODE}"]')
    minimap = big.locator('canvas[data-gradsight="minimap"]')
    dark = {
        "view": _luminance(small.first, "backgroundColor"),
        "text": _luminance(small.first, "color"),
        "node": _luminance(node.locator(".gs-box").first, "fill"),
        "label": _luminance(node.locator(".gs-label-name").first, "fill"),
        "canvas view": _luminance(big.first, "backgroundColor"),
        "minimap": float(minimap.evaluate(MINIMAP)),
    }
    assert all(dark[k] < 60 for k in ("view", "node", "canvas view", "minimap")), dark
    assert all(dark[k] > 180 for k in ("text", "label")), dark

    # back to light: marimo flips <body>'s classes and data-theme; watchTheme has the canvas re-read its palette
    page.emulate_media(color_scheme="light")
    page.wait_for_function(f"el => ({MINIMAP})(el) > 200", arg=minimap.element_handle(), timeout=30_000)
    light = {
        "view": _luminance(small.first, "backgroundColor"),
        "text": _luminance(small.first, "color"),
        "node": _luminance(node.locator(".gs-box").first, "fill"),
        "canvas view": _luminance(big.first, "backgroundColor"),
    }
    assert all(light[k] > 200 for k in ("view", "node", "canvas view")) and light["text"] < 80, light

    # marimo's output column is narrow in a wide window: the inspector goes below the graph, which
    # keeps most of the width (side by side, the big view's graph was ~100 px between outline and inspector)
    for view in (small.first, big.first):
        whole, graph = view.bounding_box(), view.locator(".gs-graph").bounding_box()
        inspector = view.locator('[data-gradsight="inspector"]').bounding_box()
        assert whole and graph and inspector and whole["width"] < 900, (whole, graph)
        assert inspector["y"] >= graph["y"] + graph["height"] - 1, (graph, inspector)
        assert graph["width"] >= 0.95 * whole["width"], (whole, graph)
    canvas = big.first.locator('canvas[data-gradsight="canvas"]').bounding_box()
    assert canvas and canvas["width"] >= 0.5 * whole["width"], (whole, canvas)


# -- live mode and what-if re-runs in marimo -------------------------------------------------------

# the gradient a training step of MODEL's model (loss: the output's squares, summed) sends into
# layer1.weight, by plain functional PyTorch on copies of the parameters: no call of the followed
# model, so no step of its own
PYTORCH_LEAF_NORM = """_w1, _b1, _w2, _b2 = (p.detach().clone().requires_grad_() for p in (model.layer1.weight,
    model.layer1.bias, model.layer2.weight, model.layer2.bias))
_out = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(batch, _w1, _b1)), _w2, _b2)
_loss = _out.pow(2).sum()
_g = torch.autograd.grad(_loss, _w1, retain_graph=True)[0]"""

# the nodes of PyTorch's own backward graph below a tensor (what the view must show, one for one)
GRAPH_NODES = """def _graph_nodes(t):
    seen, todo = set(), [t.grad_fn]
    while todo:
        f = todo.pop()
        if f is not None and f not in seen:
            seen.add(f)
            todo.extend(g for g, _ in f.next_functions)
    return len(seen)"""

LIVE_NOTEBOOK = f"""import marimo

app = marimo.App()


@app.cell
def _():
{_indent(MODEL)}
    import threading
    import marimo as mo
    again = mo.ui.button(label="another step", value=0, on_click=lambda n: n + 1)
    again
    return again, batch, gradsight, mo, model, threading, torch


@app.cell
def _(gradsight, mo, model):
    dbg = gradsight.debugger(model)
    mo.ui.anywidget(dbg)
    return (dbg,)


@app.cell
def _(again, batch, dbg, mo, model, threading):
    if again.value == 0:
        model(batch).pow(2).sum().backward()
    else:  # the button's steps end on another thread, as CUDA's autograd worker threads end them
        _worker = threading.Thread(target=lambda: model(batch).pow(2).sum().backward())
        _worker.start()
        _worker.join()
    _grad = model.layer1.weight.grad.norm().item()
    _shown = f"step={{dbg.graph.run.step}} clicks={{again.value}} grad={{_grad!r}} error={{dbg.error!r}}"
    mo.Html(f"<pre id='trained'>{{_shown}}</pre>")
    return


@app.cell
def _(batch, mo, model, torch):
    import json
{_indent(PYTORCH_LEAF_NORM)}
{_indent(GRAPH_NODES)}
    _expected = {{"norm": _g.norm().item(), "nodes": _graph_nodes(_out)}}
    mo.Html(f"<pre id='pytorch-step'>{{json.dumps(_expected)}}</pre>")
    return


if __name__ == "__main__":
    app.run()
"""


def test_marimo_live_debugger_shows_the_training_step_of_a_later_cell(marimo: Marimo, page: Page) -> None:
    page.goto(marimo.notebook("hosts_marimo_live.py", LIVE_NOTEBOOK))
    widget = page.locator(".gradsight").first
    addmm = widget.locator('[data-node-id="layer1/AddmmBackward0#0"]')
    expect(addmm).to_be_visible(timeout=90_000)
    expect(addmm).to_have_attribute("data-executed", "true")
    expect(widget.locator('[data-gradsight="status"]')).to_have_text("ready")
    expect(widget.locator('[data-run="step"]')).to_contain_text("1")
    pytorch = json.loads(page.locator("#pytorch-step").inner_text())
    expect(widget.locator("[data-node-name]")).to_have_count(pytorch["nodes"])  # PyTorch's graph below the output
    expected = pytorch["norm"]
    # published while the cell ran (on marimo's kernel thread, no end-of-cell event); .grad is PyTorch's
    trained = page.locator("#trained")
    expect(trained).to_contain_text("step=1 ", timeout=30_000)
    grad = number(trained.inner_text().split("grad=")[1])
    assert abs(grad - expected) <= 1e-6 * expected, (trained.inner_text(), expected)
    assert trained.inner_text().endswith("error=''")

    def leaf_norm() -> float:
        widget.locator('[data-node-id="leaf:layer1.weight"]').click()
        inspector = widget.locator('[data-gradsight="inspector"]')
        expect(inspector).to_have_attribute("data-node", "leaf:layer1.weight")
        expect(inspector).to_have_attribute("data-inspect-status", "done", timeout=30_000)
        return number(inspector.locator('[data-section="grad-in"] [data-stat="norm"]').first.inner_text())

    assert abs(leaf_norm() - expected) <= 1e-3 * abs(expected), (leaf_norm(), expected)

    # the button runs the cell again, right after a captured step: marimo has no post_run_cell, so
    # the rate limits are lifted for a step after the kernel's loop got control and a pause (a
    # person's: at least 0.2 s, see live.IDLE_FLOOR; the checks above take ~0.5 s, the wait makes it
    # a realistic human gap whatever the machine's speed). This step ends on a worker thread: not
    # shown while the cell runs, shown in the view once marimo's run is done (gradsight's callback on
    # the kernel's asyncio loop)
    page.wait_for_timeout(500)
    page.get_by_role("button", name="another step").click()
    expect(trained).to_contain_text("clicks=1 ", timeout=30_000)
    assert trained.inner_text().startswith("step=1 "), trained.inner_text()
    grad = number(trained.inner_text().split("grad=")[1])
    assert abs(grad - 2 * expected) <= 1e-5 * expected, (grad, expected)  # .grad sums both steps
    expect(widget.locator('[data-run="step"]')).to_have_text("step 2", timeout=30_000)
    assert abs(leaf_norm() - expected) <= 1e-3 * abs(expected)  # this step's gradient, not .grad's sum


# PyTorch's own graph of the runnable debugger's step with some parameters frozen (on a copy of the
# model): how many nodes, and which parameters get a gradient
WHATIF_EXPECTED = """def _step(frozen):
    _m = copy.deepcopy(model)
    for _name, _p in _m.named_parameters():
        _p.requires_grad_(not any(_name == f or _name.startswith(f + ".") for f in frozen))
    _loss = (target - _m(batch)).pow(2).sum()
    _loss.backward()
    _leaves = sorted(n for n, p in _m.named_parameters() if p.grad is not None)
    return {"nodes": _graph_nodes(_loss), "leaves": _leaves}"""

WHATIF_NOTEBOOK = f"""import marimo

app = marimo.App()


@app.cell
def _():
{_indent(MODEL)}
    import copy, json
    import marimo as mo
    check = mo.ui.button(label="check python", value=0, on_click=lambda n: n + 1)
    check
    return batch, check, copy, gradsight, json, mo, model, target, torch


@app.cell
def _(batch, gradsight, mo, model, target):
    dbg = gradsight.debugger(model, inputs=batch, loss=lambda out: (target - out).pow(2).sum())
    mo.ui.anywidget(dbg)
    return (dbg,)


@app.cell
def _(batch, copy, json, mo, model, target):
{_indent(GRAPH_NODES)}
{_indent(WHATIF_EXPECTED)}
    _cases = {{"all": [], "w1": ["layer1.weight"], "w1+l2": ["layer1.weight", "layer2"]}}
    _expected = {{case: _step(frozen) for case, frozen in _cases.items()}}
    mo.Html(f"<pre id='pytorch-whatif'>{{json.dumps(_expected)}}</pre>")
    return


@app.cell
def _(check, dbg, mo, model):
    _clicks = check.value  # the button runs this cell again
    _flags = [p.requires_grad for p in model.parameters()]
    _grads = [p.grad for p in model.parameters()]
    _shown = f"requires_grad={{_flags}} grads={{_grads}} runs={{len(dbg.history)}} error={{dbg.error!r}}"
    mo.Html(f"<pre id='python-side'>{{_shown}}</pre>")
    return


if __name__ == "__main__":
    app.run()
"""


def test_marimo_what_if_toggles_rerun_from_the_view(marimo: Marimo, page: Page) -> None:
    page.goto(marimo.notebook("hosts_marimo_whatif.py", WHATIF_NOTEBOOK))
    widget = page.locator(".gradsight").first
    status = widget.locator('[data-gradsight="status"]')
    expect(status).to_have_text("ready", timeout=90_000)
    pytorch = json.loads(page.locator("#pytorch-whatif").inner_text())
    nodes, leaves = widget.locator(".gs-node[data-node-name]"), widget.locator('.gs-node[data-node-id^="leaf:"]')

    def shows(case: str) -> None:  # the graph PyTorch builds for this case, node for node
        expect(nodes).to_have_count(pytorch[case]["nodes"], timeout=30_000)
        ids = sorted(str(leaves.nth(i).get_attribute("data-node-id")) for i in range(leaves.count()))
        assert ids == [f"leaf:{n}" for n in pytorch[case]["leaves"]], (case, ids)

    def rerun(index: int) -> None:  # a custom message to Python; the new run comes back as trait updates
        widget.locator('[data-action="rerun"]').first.click()
        expect(widget.locator(f'[data-run-index="{index}"]').first).to_be_attached(timeout=60_000)  # in the history
        expect(status).to_have_text("ready", timeout=60_000)

    shows("all")
    # requires_grad off for one parameter: its leaf is gone and the diff says it lost its gradient
    box = widget.locator('[data-toggle="requires-grad"][data-leaf="layer1.weight"]')
    expect(box).to_be_checked()
    box.click()
    expect(box).not_to_be_checked()
    rerun(1)
    shows("w1")
    expect(widget.locator('[data-diff="lost-grad"]')).to_contain_text("layer1.weight")
    # and a whole module frozen on top
    widget.locator('[data-scope-toggle="freeze"][data-module="layer2"]').click()
    rerun(2)
    shows("w1+l2")
    expect(widget.locator('[data-diff="lost-grad"]')).to_contain_text("layer2.weight")
    # Python's side: the user's parameters are as they were (requires_grad on, no .grad), three runs
    page.get_by_role("button", name="check python").click()
    expect(page.locator("#python-side")).to_have_text(
        "requires_grad=[True, True, True, True] grads=[None, None, None, None] runs=3 error=''", timeout=30_000
    )
