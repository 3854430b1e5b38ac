"""Watching a %%gradsight cell's own forward as a runnable run's is watched: each node's source line
(a ``SourceTracker``) and the module calls (the shared global module hooks, named from the namespace
after the cell), within the sequence numbers the cell's thread used — and when not to (:func:`unwatched`:
dynamo guards on the mode stack and the global hooks, so a cell that compiles, uses something compiled,
or runs in a process where dynamo has compiled code is left alone).
"""

from __future__ import annotations

import ast
import contextlib
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch

from .. import config
from ..graph import LeafInfo
from .cell_scope import module_paths
from .hooks import ACCUMULATE_GRAD
from .modules import SHARED_HOOKS, ModuleTracker, is_compiled
from .names import infer_module
from .source import SourceTracker
from .walk import short_name, walk

# Calls that made nodes, and module calls, a cell's forward remembers (the last ones): a loop of many
# training steps in a cell keeps a bounded record, far more than one step of a big model makes.
KEEP_FORWARD_CALLS = 100_000


class CellForward:
    """What the cell's own forward is made of, recorded while it runs: each node's source line (a
    :class:`SourceTracker`, warnings inside ops re-issued at the cell's line at once; not when
    ``options.source_lines`` is off) and the module calls (:class:`ModuleCalls`), within the sequence
    numbers the cell's thread used. Neither where dynamo may run in the cell (:func:`unwatched`): it
    guards on the mode stack and the global module hooks, and would compile again for the cell (and
    again after it); ``note`` says why."""

    def __init__(self, code: str, ns: Mapping[str, Any]) -> None:
        self.note = unwatched(code, ns)
        watch = self.note is None
        lines = watch and config.options.source_lines
        self.sources = SourceTracker(warn_at_once=True, keep=KEEP_FORWARD_CALLS) if lines else None
        self.calls = ModuleCalls() if watch else None
        self.first = self.end = _next_seq()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CellForward:
        with contextlib.ExitStack() as stack:
            if self.calls is not None:
                SHARED_HOOKS.add(self.calls)
                stack.callback(SHARED_HOOKS.discard, self.calls)
            if self.sources is not None:
                stack.enter_context(self.sources)
            self._stack = stack.pop_all()
        self.first = _next_seq()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.end = _next_seq()
        self._stack.close()

    def module_of(self, roots: list[Any], ns: Mapping[str, Any],
                  leaf_names: Mapping[torch.Tensor, str]) -> Callable[[int], str | None] | None:  # fmt: skip
        """Sequence number -> module path: for the nodes the cell made, the innermost module whose
        forward made them (None: outside every module the namespace names — the cell's own code, even
        where it uses a parameter, as a runnable run's ops outside its model); for nodes made before
        the cell, the guess from the parameters they consume. None (every node guessed) when the cell
        was not watched."""
        calls = self.calls
        if calls is None:
            return None
        lookup = ModuleTracker((), start=False)
        if calls.ranges:
            paths = module_paths(ns)
            lookup.ranges = [(start, end, paths[id(m)]) for start, end, m in calls.ranges if id(m) in paths]
            calls.ranges.clear()  # the modules themselves: not kept past the capture
        first, end = self.first, self.end
        earlier: dict[int, str | None] = {}
        order, _, _ = walk(roots)
        for node in order:
            seq = node._sequence_nr()
            if not first <= seq < end and short_name(node) != ACCUMULATE_GRAD:
                earlier[seq] = _guessed_module(node, leaf_names)
        del order

        def module_of(seq: int) -> str | None:
            return lookup.module_of(seq) if first <= seq < end else earlier.get(seq)

        return module_of


def _guessed_module(node: Any, leaf_names: Mapping[torch.Tensor, str]) -> str | None:
    """What a capture guesses without module calls: the module of the named parameters ``node`` consumes."""
    children = [fn for fn, _ in node.next_functions if fn is not None and short_name(fn) == ACCUMULATE_GRAD]
    return infer_module([LeafInfo(leaf_names.get(fn.variable), (), True) for fn in children])


class ModuleCalls:
    """Every module call on the cell's thread, as ``(first seq, end seq, module)`` (a tracker of the
    shared global module hooks, as :class:`ModuleTracker` but for modules named only after the cell
    ran: one it makes is in no namespace before). The last ``KEEP_FORWARD_CALLS`` calls: a training loop in
    the cell shows its last step."""

    def __init__(self) -> None:
        self._thread = threading.get_ident()
        self._open: dict[int, list[int]] = {}  # id(module) -> start numbers (re-entrant calls)
        self.ranges: deque[tuple[int, int, torch.nn.Module]] = deque(maxlen=KEEP_FORWARD_CALLS)

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        if threading.get_ident() == self._thread and _graph_task_id() == -1:  # not a checkpoint recompute
            self._open.setdefault(id(module), []).append(_next_seq())

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        stack = self._open.get(id(module))
        if stack and threading.get_ident() == self._thread and _graph_task_id() == -1:
            self.ranges.append((stack.pop(), _next_seq(), module))


UNWATCHED = (
    "Source lines and module calls are not recorded in this cell: {reason}. Dynamo guards on the torch-function "
    "mode and the global module hooks gradsight would add, and would compile again; ops get the module whose "
    "parameters they consume."
)


def unwatched(code: str, ns: Mapping[str, Any]) -> str | None:
    """Why the cell's forward is not watched (a note), or None: the cell compiles something, or
    calls a ``torch.compile``'d function or module (or a module holding one) of the namespace, or
    dynamo has compiled code in this process, which a helper the cell calls may run (``fast = torch.
    compile(f)`` in an earlier cell, ``helper(x)`` calling ``fast`` in this one)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # IPython's transforms made it; what runs is checked before
        return None
    if compiles(tree, ns):
        return UNWATCHED.format(reason="it calls torch.compile")
    if dynamo_compiled():
        return UNWATCHED.format(
            reason="torch.compile has compiled code in this session, which the cell may run (torch._dynamo.reset() "
            "forgets it)"
        )
    if sys.modules.get("torch._dynamo.eval_frame") is None:  # dynamo not imported: nothing is compiled
        return None
    for name in sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}):
        value = ns.get(name)
        try:
            found = is_compiled(value) or (
                isinstance(value, torch.nn.Module) and any(is_compiled(m) for m in value.modules())
            )
        except Exception:  # an object of the user's that raises when asked: not compiled by torch
            found = False
        if found:
            return UNWATCHED.format(reason=f"it uses {name}, compiled by torch.compile")
    return None


def dynamo_compiled() -> bool:
    """Has dynamo compiled code in this process (since its last ``torch._dynamo.reset()``)? It tracks
    the code objects it generated (``convert_frame.output_codes``, weakly; reset clears it). Not
    imported: nothing was compiled (importing it would cost a second)."""
    convert_frame = sys.modules.get("torch._dynamo.convert_frame")
    seen = getattr(getattr(convert_frame, "output_codes", None), "seen_ids", None)
    return bool(seen)


_COMPILERS = ("torch.compile", "torch.compiler.compile", "torch._dynamo.optimize")


def compiles(tree: ast.AST, ns: Mapping[str, Any]) -> bool:
    """Does the cell's code compile with dynamo? What it names, not what it says in strings or
    comments: ``torch.compile`` (called, or as a decorator), ``X.compile`` unless ``X`` is a module
    outside torch (``model.compile()``, not ``re.compile(...)``), ``torch._dynamo.optimize``, or a
    name bound to one of them (by the cell's own imports, or in the namespace)."""
    imported = _imports(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            path = imported.get(node.id)
            if path in _COMPILERS or (path is None and _is_compiler(ns.get(node.id))):
                return True
        elif isinstance(node, ast.Attribute) and node.attr in ("compile", "optimize"):
            owner = _path(node.value, imported, ns)
            if node.attr == "compile" and (owner is None or _in_torch(owner)):
                return True  # torch.compile, torch.compiler.compile; model.compile(), or an unknown object's
            if node.attr == "optimize" and (owner or _dotted_text(node.value)).rsplit(".", 1)[-1] == "_dynamo":
                return True
    return False


def _is_compiler(value: Any) -> bool:
    if value is None or value is torch.compile:
        return value is not None
    try:
        module, name = getattr(value, "__module__", None), getattr(value, "__name__", None)
    except Exception:  # a proxy of the user's that raises on any attribute: no compiler of torch's
        return False
    return isinstance(module, str) and module.startswith("torch._dynamo") and name == "optimize"


def _in_torch(path: str) -> bool:
    return path == "torch" or path.startswith("torch.")


def _imports(tree: ast.AST) -> dict[str, str]:
    """Names the cell's imports bind -> the dotted path they stand for (``import torch._dynamo as
    dyn``: dyn -> torch._dynamo; ``from torch import compile``: compile -> torch.compile)."""
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    imported[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    imported[root] = root
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return imported


def _path(expr: ast.expr, imported: Mapping[str, str], ns: Mapping[str, Any]) -> str | None:
    """The dotted path of a module, or of a name inside one, that ``expr`` stands for (``re``,
    ``torch.nn.Module``); None for anything else (an object, a call's result, a name not bound)."""
    parts = _dotted(expr)
    if not parts:
        return None
    root, rest = parts[0], parts[1:]
    if root in imported:
        return ".".join([imported[root], *rest])
    value = ns.get(root)
    if not isinstance(value, ModuleType):
        return None
    for i, attr in enumerate(rest):
        inner = vars(value).get(attr)
        if not isinstance(inner, ModuleType):
            return ".".join([value.__name__, *rest[i:]])
        value = inner
    return value.__name__


def _dotted(expr: ast.expr) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return [expr.id, *reversed(parts)]


def _dotted_text(expr: ast.expr) -> str:
    return ".".join(_dotted(expr) or [])


_next_seq = torch._C._autograd._get_sequence_nr
_graph_task_id = torch._C._current_graph_task_id
