"""``%load_ext gradsight``: the ``%%gradsight`` cell magic, and exactly its removal on unload.

    %load_ext gradsight

    %%gradsight
    input1 = torch.linspace(0., 2. * math.pi, steps=25, requires_grad=True)
    out3 = 2 * torch.sin(input1) + 1

shows the backward graph of ``out3``. If the cell calls ``.backward()``, the saved tensors it
frees are still shown (summarized just before backward ran), marked as freed.
"""

from __future__ import annotations
import __future__

import ast
import functools
import inspect
import operator
from typing import Any

MAGIC = "gradsight"
_previous: dict[int, Any] = {}  # shell id -> what %%gradsight was before we loaded (normally none)


def load_ipython_extension(ipython: Any) -> None:
    from . import _capture  # noqa: F401 - an unsupported torch fails here, at %load_ext, not in a cell

    manager = ipython.magics_manager
    _previous.setdefault(id(ipython), manager.magics["cell"].get(MAGIC))

    def gradsight(line: str, cell: str) -> Any:
        __tracebackhide__ = True  # a failing cell's traceback starts at the user's code
        return run_magic(ipython, line, cell)

    ipython.register_magic_function(gradsight, magic_kind="cell", magic_name=MAGIC)


def unload_ipython_extension(ipython: Any) -> None:
    manager = ipython.magics_manager
    previous = _previous.pop(id(ipython), None)
    if previous is None:
        manager.magics["cell"].pop(MAGIC, None)
        if hasattr(manager.user_magics, MAGIC):
            delattr(manager.user_magics, MAGIC)
    else:
        manager.magics["cell"][MAGIC] = previous


def run_magic(ipython: Any, line: str, cell: str) -> Any:
    """Run ``cell`` in the user namespace and return a Debugger of what it computed."""
    from ._capture.cell import run_first
    from ._capture.tracebacks import without_detours
    from .config import options
    from .widget import Debugger

    if line.strip():
        raise ValueError(f"%%gradsight takes no arguments (got {line.strip()!r}); put the code in the cell")
    # A blank line where ``%%gradsight`` stands, and the blank lines transform_cell drops from the
    # top: lines are counted as the notebook numbers them.
    code = ipython.transform_cell(cell)
    code = "\n" * max(1, 1 + _leading_blank(cell) - _leading_blank(code)) + code
    # Cached as IPython caches a cell: under the cell's execution count, so tracebacks and source
    # lines name it (``Cell In[4], line 3``, ``In[4]:3``: the third line, %%gradsight the first).
    filename = ipython.compile.cache(code, _execution_count(ipython), raw_code=cell)
    _check_compiles(ipython, code, filename)  # before anything runs, and no debugger for it
    compiler = ipython.compile

    def compile_fn(tree: ast.Module | ast.Expression, mode: str) -> Any:
        # IPython's compiler, as for a plain cell: the session's ``from __future__`` imports apply
        # (and one in the cell stays for later cells), never those of gradsight's own modules
        return compiler(ast.fix_missing_locations(tree), filename, mode)

    result, target = run_first(code, ipython.user_ns, compile_fn, options.memory_budget)
    dbg = Debugger()
    dbg._start(target, result.captured)
    if result.error is not None:  # show the graph so far, then fail the cell (Run All, nbconvert stop); a
        # KeyboardInterrupt too (run_first catches it in the cell's code), so the cell still stops
        __tracebackhide__ = True  # IPython hides this frame and the magic's own
        error = result.error
        tb = error.__traceback__
        tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb  # hide gradsight's exec frame
        tb = without_detours(tb)  # and torch's dispatch to the cell's torch-function mode
        _display(dbg)
        raise error.with_traceback(tb)
    return dbg


def _execution_count(ipython: Any) -> int:
    """The number IPython gave the running cell (``In[4]``). IPython 9 counts the next cell up before
    running this one; the cell's own number is on the result it fills (``displayhook.exec_result``)."""
    result = getattr(getattr(ipython, "displayhook", None), "exec_result", None)
    count = getattr(result, "execution_count", None)
    if isinstance(count, int):
        return count
    count = getattr(ipython, "execution_count", 0)
    return count if isinstance(count, int) else 0


class CellSyntaxError(Exception):
    """A ``%%gradsight`` cell that does not compile (or awaits at top level). IPython shows it as it
    shows a plain cell's ``SyntaxError``: the cell's line, no frames of gradsight. (A ``SyntaxError``
    raised from a magic is shown with every frame it passed through, gradsight's included.)"""

    def __init__(self, error: SyntaxError, rendered: list[str]) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self._rendered = rendered

    def _render_traceback_(self) -> list[str]:  # IPython's hook for how an exception is shown
        return self._rendered


AWAIT = (
    "%%gradsight cannot run top-level await (or async for / async with): a cell magic runs synchronously "
    "(in Jupyter, inside the kernel's running event loop), so gradsight cannot wait for the cell. Await in a "
    "plain cell first (batch = await fetch()), then compute the loss from the result in the %%gradsight cell."
)


def _leading_blank(text: str) -> int:
    """How many blank lines ``text`` starts with."""
    n = 0
    for line in text.splitlines():
        if line.strip():
            break
        n += 1
    return n


def _check_compiles(ipython: Any, code: str, filename: str) -> None:
    """Raise :class:`CellSyntaxError` for a cell that does not compile, or that needs an event loop."""
    __tracebackhide__ = True
    try:
        flags = (getattr(ipython.compile, "flags", 0) & _FUTURES) | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        compiled = compile(code, filename, "exec", flags=flags, dont_inherit=True)
        error = None
        if compiled.co_flags & inspect.CO_COROUTINE:
            lineno, col = _top_level_await(ast.parse(code))
            line = code.splitlines()[lineno - 1] if lineno <= len(code.splitlines()) else ""
            error = SyntaxError(AWAIT, (filename, lineno, col + 1, line, lineno, None))
    except (SyntaxError, ValueError) as e:  # ValueError: a null byte in the source
        error = e if isinstance(e, SyntaxError) else SyntaxError(str(e))
    if error is not None:
        raise CellSyntaxError(error, ipython.SyntaxTB.structured_traceback(type(error), error, [])) from None


_FUTURES = functools.reduce(operator.or_, (getattr(__future__, f).compiler_flag for f in __future__.all_feature_names))


def _top_level_await(tree: ast.AST) -> tuple[int, int]:
    """(line, column) of the first await, async for/with or async comprehension outside a function."""
    stack = [tree]
    while stack:
        node = stack.pop(0)
        if isinstance(node, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
            return node.lineno, node.col_offset
        if isinstance(node, ast.comprehension) and node.is_async:
            return node.target.lineno, node.target.col_offset
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return 1, 0


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)  # type: ignore[no-untyped-call]
