"""Helpers for the browser tests and benchmarks: Jupyter servers (Lab, Notebook 7), chromium, notebooks, the kernel.

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
    """A running Jupyter server: JupyterLab 4 (``page="lab/tree"``) or Notebook 7 (``page="notebooks"``)."""

    url: str
    root: pathlib.Path
    page: str = "lab/tree"

    def notebook(self, name: str, cells: list[str]) -> str:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, self.root / name)
        reset = "reset&" if self.page == "lab/tree" else ""
        return f"{self.url}/{self.page}/{name}?{reset}token={TOKEN}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyter_lab() -> Iterator[Lab]:
    """A JupyterLab 4 server of this venv on a free port, in a temp dir; stopped (by process group) on exit."""
    flags = ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly"]
    with _jupyter_server("jupyter-lab", "LabApp", flags) as (url, root):
        yield Lab(url, root)


@contextlib.contextmanager
def jupyter_notebook() -> Iterator[Lab]:
    """A Notebook 7 server of this venv on a free port, in a temp dir; stopped (by process group) on exit.

    Its pages expose ``window.jupyterapp`` (``expose_app_in_browser``) like the Lab server's, so
    ``open_and_run`` and ``kernel_exec`` drive both the same way."""
    flags = ["--JupyterNotebookApp.expose_app_in_browser=True"]
    with _jupyter_server("jupyter-notebook", "JupyterNotebookApp", flags) as (url, root):
        yield Lab(url, root, page="notebooks")


@contextlib.contextmanager
def _jupyter_server(program: str, app: str, flags: list[str]) -> Iterator[tuple[str, pathlib.Path]]:
    root = pathlib.Path(tempfile.mkdtemp(prefix="gradsight-e2e-"))
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(root / ".rt"), JUPYTER_CONFIG_DIR=str(root / ".cfg"),
               JUPYTER_PLATFORM_DIRS="1")  # fmt: skip
    news = root / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the widget
    cmd = [str(pathlib.Path(sys.executable).parent / program), "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
           "--allow-root", f"--{app}.workspaces_dir={root / '.ws'}",
           f"--{app}.user_settings_dir={root / '.settings'}", *flags]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with _serve(program, cmd, env, root, f"{url}/api/status?token={TOKEN}"):
        yield url, root


@dataclass
class Marimo:
    """A running ``marimo edit`` server over a temp folder: each notebook is a file in it."""

    url: str
    root: pathlib.Path

    def notebook(self, name: str, source: str) -> str:
        (self.root / name).write_text(source)
        return f"{self.url}/?file={name}"


@contextlib.contextmanager
def marimo_edit() -> Iterator[Marimo]:
    """A headless ``marimo edit`` server of this venv (no token) on a free port over a temp folder;
    stopped (by process group: the server and its kernel processes) on exit.

    marimo's own config (``$XDG_CONFIG_HOME/marimo/marimo.toml``) lives in the temp folder and sets
    ``auto_instantiate``, so opening a notebook runs its cells as ``marimo run`` does (the default
    waits for the user to press run)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="gradsight-e2e-marimo-"))
    port = _free_port()
    home = root / ".home"
    (home / ".config" / "marimo").mkdir(parents=True)
    (home / ".config" / "marimo" / "marimo.toml").write_text("[runtime]\nauto_instantiate = true\n")
    env = dict(os.environ, XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".state"),
               XDG_CACHE_HOME=str(home / ".cache"), MARIMO_SKIP_UPDATE_CHECK="1")  # fmt: skip
    cmd = [str(pathlib.Path(sys.executable).parent / "marimo"), "edit", str(root), "--headless", "--no-token",
           "--host=127.0.0.1", f"--port={port}", "--skip-update-check", "--no-sandbox"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with _serve("marimo edit", cmd, env, root, f"{url}/health"):
        yield Marimo(url, root)


@contextlib.contextmanager
def _serve(program: str, cmd: list[str], env: dict[str, str], root: pathlib.Path, ready_url: str) -> Iterator[None]:
    """Run a server in its own process group with its log in ``root``; wait until ``ready_url``
    answers; on exit stop the group (SIGTERM, then SIGKILL for stragglers) and remove ``root``."""
    env = dict(env, PYTHONPATH="")
    env.pop("ANYWIDGET_HMR", None)
    log = open(root / ".server.log", "w")  # noqa: SIM115 - closed in finally
    server = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(ready_url, server, root, program)
        yield
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


def _wait_for_server(ready_url: str, server: subprocess.Popen[bytes], root: pathlib.Path, program: str) -> None:
    t0 = time.monotonic()
    while True:
        try:
            urllib.request.urlopen(ready_url, timeout=1).read()
            return
        except Exception:
            if server.poll() is not None or time.monotonic() - t0 > 90:
                raise RuntimeError(f"{program} did not start:\n" + (root / ".server.log").read_text()[-3000:]) from None
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
