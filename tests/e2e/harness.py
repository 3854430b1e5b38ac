"""Helpers for the browser tests: open a notebook in JupyterLab, run it, talk to its kernel."""

from __future__ import annotations

from playwright.sync_api import Page


def open_and_run(page: Page, url: str) -> None:
    """Open a notebook, wait for its kernel, run all cells."""
    page.goto(url)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
        " && window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=90_000,
    )
    page.evaluate(
        """async () => {
            const nb = window.jupyterapp.shell.currentWidget;
            await nb.context.ready; await nb.sessionContext.ready;
            await nb.sessionContext.session.kernel.info; }"""
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def kernel_exec(page: Page, code: str) -> str:
    """Run code on the notebook's kernel from the page; returns its stdout."""
    result: dict[str, object] = page.evaluate(
        """async (code) => {
            const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const f = k.requestExecute({code, store_history: false});
            let out = "";
            f.onIOPub = (m) => {
                if (m.header.msg_type === 'stream') out += m.content.text;
                if (m.header.msg_type === 'error') out += m.content.ename + ': ' + m.content.evalue;
            };
            const r = await f.done; return {status: r.content.status, out}; }""",
        code,
    )
    assert result["status"] == "ok", result
    return str(result["out"])
