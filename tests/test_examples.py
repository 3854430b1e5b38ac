"""The example notebooks run top to bottom, and every graph cell displays a gradsight widget."""

from __future__ import annotations

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("name", ["quickstart.ipynb"])
def test_example_runs_and_shows_widgets(name: str) -> None:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    graph_cells = [
        c for c in nb.cells if c.cell_type == "code" and ("%%gradsight" in c.source or "gs.debugger(" in c.source)
    ]
    assert graph_cells
    for cell in graph_cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, errors
        assert any(WIDGET_MIME in o.get("data", {}) for o in cell.outputs), cell.source
