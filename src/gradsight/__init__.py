"""gradsight: an autograd debugger for PyTorch that lives in the notebook.

    import gradsight as gs
    gs.debugger(loss, params=model)     # the backward graph of loss, leaves named after parameters

    %load_ext gradsight                 # then: a %%gradsight cell shows the graph of what it computed

The public names below are the whole facade; everything else is private (``_capture`` is the only
code that imports torch).
"""

from ._api import debugger
from .config import Options, options
from .graph import Graph, LeafInfo, Node, OutputMeta, RunInfo, TensorSummary, Unavailable
from .inspection import GradStep, Histogram, Inspection, Preview, TensorView
from .magic import load_ipython_extension, unload_ipython_extension
from .schema import SCHEMA_VERSION
from .widget import Debugger

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
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
    "RunInfo",
    "TensorSummary",
    "TensorView",
    "Unavailable",
    "__version__",
    "debugger",
    "load_ipython_extension",
    "options",
    "unload_ipython_extension",
]
