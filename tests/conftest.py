from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.interactiveshell import InteractiveShell


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite tests/golden/*.json from the current code instead of comparing to them",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture(autouse=True)
def no_compiled_code_left() -> Iterator[None]:
    """A test that compiled with dynamo resets it after: while dynamo holds compiled code, cells
    record no source lines or modules (cell_forward.dynamo_compiled), and later tests would see that."""
    yield
    from gradsight._capture.cell_forward import dynamo_compiled

    if dynamo_compiled():
        import torch._dynamo

        torch._dynamo.reset()


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """A real IPython shell with ``%load_ext gradsight``. Cleared afterwards: a shell left as the
    singleton is what ``get_ipython()`` finds, and later tests of the no-IPython paths (marimo's
    asyncio-loop callback in live mode) would take IPython's."""
    sh = InteractiveShell.instance()
    sh.run_cell("import math, torch\nfrom torch import nn", store_history=False)
    sh.run_line_magic("load_ext", "gradsight")
    yield sh
    sh.run_line_magic("unload_ext", "gradsight")
    sh.reset(new_session=False)
    InteractiveShell.clear_instance()


@pytest.fixture
def every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live debuggers capture every step (no rate or time-share limit): live tests use it through
    ``pytestmark = pytest.mark.usefixtures("every_step")``."""
    import gradsight as gs

    monkeypatch.setattr(gs.options, "live_interval", 0.0)
    monkeypatch.setattr(gs.options, "live_share", 1.0)
