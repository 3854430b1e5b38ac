"""Real-browser fixtures: a JupyterLab 4 server from this venv and Debian's chromium via Playwright.

A missing chromium is a failure, never a skip (CI must run these tests).
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.harness import ARTIFACTS, OUR_WORDS, Lab, chromium, jupyter_lab

__all__ = ["ARTIFACTS", "Lab"]


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
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    yield pg
    context.close()
    ours = [e for e in errors if e.startswith("page error") or any(w in e.lower() for w in OUR_WORDS)]
    assert not ours, ours
