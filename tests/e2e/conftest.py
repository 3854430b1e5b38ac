"""Real-browser fixtures: JupyterLab 4, Notebook 7 and marimo servers from this venv (each started
once per session, only when a test asks for it) and Debian's chromium via Playwright.

A missing chromium is a failure, never a skip (CI must run these tests).
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Error, Page

from tests.e2e.harness import ARTIFACTS, OUR_WORDS, Lab, Marimo, chromium, jupyter_lab, jupyter_notebook, marimo_edit

__all__ = ["ARTIFACTS", "Lab", "Marimo"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = pathlib.Path(__file__).parent
    for item in items:
        if here in pathlib.Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    with jupyter_lab() as server:
        yield server


@pytest.fixture(scope="session")
def notebook7() -> Iterator[Lab]:
    with jupyter_notebook() as server:
        yield server


@pytest.fixture(scope="session")
def marimo() -> Iterator[Marimo]:
    with marimo_edit() as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.fail("Debian chromium is not installed: `make test` installs it (apt-get install chromium)")
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: None if _notebook7_own(e) else errors.append(f"page error: {e}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    yield pg
    context.close()
    ours = [e for e in errors if e.startswith("page error") or any(w in e.lower() for w in OUR_WORDS)]
    assert not ours, ours


def _notebook7_own(error: Error) -> bool:
    """Notebook 7.6.5 (with JupyterLab 4.6.6) throws this while loading its shortcut settings, on every
    page, with an empty notebook and with the widget extensions disabled: its own error, not ours."""
    return error.message == "Cannot read properties of undefined (reading 'schema')" and "/static/notebook/" in (
        error.stack or ""
    )
