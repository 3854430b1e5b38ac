"""Helpers for the browser tests and benchmarks: a JupyterLab server, chromium, notebooks, the kernel.

Recipe: research/widget-and-testing.md §3A. Everything started here is stopped by PID / process
group at the end.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import nbformat
from playwright.sync_api import Browser, Page, sync_playwright

CHROME_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TOKEN = "gradsight-e2e-" + os.urandom(6).hex()
ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"
OUR_WORDS = ("gradsight", "anywidget", "wire:")  # console errors that are ours (Lab logs unrelated ones)


@dataclass
class Lab:
    url: str
    root: pathlib.Path

    def notebook(self, name: str, cells: list[str]) -> str:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, self.root / name)
        return f"{self.url}/lab/tree/{name}?reset&token={TOKEN}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyter_lab() -> Iterator[Lab]:
    """A JupyterLab 4 server of this venv on a free port, in a temp dir; stopped (by process group) on exit."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="gradsight-e2e-"))
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(root / ".rt"), JUPYTER_CONFIG_DIR=str(root / ".cfg"),
               JUPYTER_PLATFORM_DIRS="1", PYTHONPATH="")  # fmt: skip
    env.pop("ANYWIDGET_HMR", None)
    news = root / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the widget
    cmd = [str(pathlib.Path(sys.executable).parent / "jupyter-lab"), "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--allow-root", "--LabApp.news_url=None",
           "--LabApp.extension_manager=readonly", f"--LabApp.workspaces_dir={root / '.ws'}",
           f"--LabApp.user_settings_dir={root / '.settings'}"]  # fmt: skip
    log = open(root / ".server.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(f"http://127.0.0.1:{port}", server, root)
        yield Lab(f"http://127.0.0.1:{port}", root)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)  # stragglers (kernels) in our own process group
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_server(url: str, server: subprocess.Popen[bytes], root: pathlib.Path) -> None:
    t0 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=1).read()
            return
        except Exception:
            if server.poll() is not None or time.monotonic() - t0 > 90:
                raise RuntimeError("JupyterLab did not start:\n" + (root / ".server.log").read_text()[-3000:]) from None
            time.sleep(0.2)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium through Playwright (no downloaded browser)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("Debian chromium is not installed: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROME_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


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
