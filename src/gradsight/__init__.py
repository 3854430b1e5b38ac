"""gradsight: an autograd debugger for PyTorch that lives in the notebook.

    import gradsight as gs
    gs.debugger(loss, params=model)     # the backward graph of loss, leaves named after parameters

    %load_ext gradsight                 # then: a %%gradsight cell shows the graph of what it computed

The public names below are the whole facade; everything else is private (``_capture`` is the only
code that imports torch).
"""

from ._api import debugger
from .config import Options, options
from .graph import Controls, Graph, LeafInfo, Node, OutputMeta, RunInfo, TensorSummary, Unavailable, Why
from .inspection import GradStep, Histogram, Inspection, Preview, TensorView
from .magic import load_ipython_extension, unload_ipython_extension
from .runs import RerunError
from .schema import SCHEMA_VERSION
from .toggles import ToggleError, Toggles
from .widget import Debugger

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # GraphDiff was exported, but no public call returns one: ``dbg.diff`` is the view's wire dict
    # (``lost_grad``, ``gained_grad``, ``loss``: {"before", "after"}, ...). Kept importable for a while.
    if name == "GraphDiff":
        import sys
        import warnings

        from .diff import GraphDiff

        if sys._getframe(1).f_code.co_name == "_handle_fromlist":  # `from gradsight import GraphDiff` probes
            return GraphDiff  # with hasattr before its own getattr: that one warns
        warnings.warn(
            "gradsight.GraphDiff is deprecated and will be removed: dbg.diff is a dict (dbg.diff['lost_grad'], "
            "dbg.diff['loss']['after'], ...); the class stays in gradsight.diff",
            DeprecationWarning,
            stacklevel=2,
        )
        return GraphDiff
    raise AttributeError(f"module 'gradsight' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "Controls",
    "Debugger",
    "GradStep",
    "Graph",
    "Histogram",
    "Inspection",
    "LeafInfo",
    "Node",
    "Options",
    "OutputMeta",
    "Preview",
    "RerunError",
    "RunInfo",
    "TensorSummary",
    "TensorView",
    "ToggleError",
    "Toggles",
    "Unavailable",
    "Why",
    "__version__",
    "debugger",
    "load_ipython_extension",
    "options",
    "unload_ipython_extension",
]
