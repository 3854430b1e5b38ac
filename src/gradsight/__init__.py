"""gradsight: an autograd debugger for PyTorch that lives in the notebook.

    import gradsight as gs
    gs.debugger(loss, params=model)     # the backward graph of loss, leaves named after parameters

    %load_ext gradsight                 # then: a %%gradsight cell shows the graph of what it computed

The public names below are the whole facade; everything else is private (``_capture`` is the only
code that imports torch).
"""

from ._api import debugger
from .config import Options, options
from .diff import GraphDiff
from .graph import Controls, Graph, LeafInfo, Node, OutputMeta, RunInfo, TensorSummary, Unavailable, Why
from .inspection import GradStep, Histogram, Inspection, Preview, TensorView
from .magic import load_ipython_extension, unload_ipython_extension
from .runs import RerunError
from .schema import SCHEMA_VERSION
from .toggles import ToggleError, Toggles
from .widget import Debugger

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Controls",
    "Debugger",
    "GradStep",
    "Graph",
    "GraphDiff",
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
