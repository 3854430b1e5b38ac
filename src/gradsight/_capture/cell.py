"""Run a %%gradsight cell and capture the graphs of the tensors it created.

The cell runs in the user's namespace. Afterwards, the tensors it bound to names (and its last
expression's value) are collected; the roots are those that no other collected tensor depends on.
Leaves are named after the user's variables, parameters after ``<module variable>.<param path>``.

While it runs, the cell's forward is watched as a runnable run's is (:class:`CellForward`): a
``SourceTracker`` records each node's source line, and the shared global module hooks each module
call's sequence-number range, named after the cell from the namespace (``model.relu``), so an op
gets the module whose forward made it, not one guessed from the parameters it consumes. Nodes made
before the cell (an earlier cell's forward) keep the guess. Neither where dynamo could see them (the
cell compiles, uses something compiled, or dynamo has compiled code in this process: it guards on the
mode stack and the global hooks, and would compile again); the graph's notes say so. The source
tracker also not when ``gradsight.options.source_lines`` is off.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from types import ModuleType, TracebackType
from typing import Any

import torch

from .. import config
from ..graph import Graph, LeafInfo, Node, RunInfo, Unavailable
from . import saved as saved_mod
from . import source as source_mod
from .hooks import ACCUMULATE_GRAD
from .modules import SHARED_HOOKS, ModuleTracker, is_compiled
from .names import infer_module
from .records import Captured, CaptureOptions
from .source import SourceTracker
from .spy import Accumulation, BackwardSpy
from .store import TensorStore
from .tensors import captured_of
from .walk import _short_name, walk

LAST_VALUE = "the cell's last value"


@dataclass
class CellResult:
    captured: Captured
    value: Any  # the cell's last expression value (None if it had none)
    error: BaseException | None

    @property
    def graph(self) -> Graph:
        return self.captured.graph


def run_cell(code: str, ns: dict[str, Any], compile_fn: Callable[..., Any], budget: int,
             after_assign: Mapping[str, str] | None = None, context: Any = None, *,
             interrupts: bool = False) -> CellResult:  # fmt: skip
    """Execute ``code`` in ``ns`` and capture; ``compile_fn(source_ast, mode)`` compiles.

    ``after_assign`` maps variable names to a statement run right after each assignment to them
    (what-if toggles: ``x = x.detach()``); ``context`` wraps the execution (e.g. ``torch.no_grad()``).
    ``interrupts``: a ``KeyboardInterrupt`` in the cell is its error, as an exception is (the cell the
    user runs: the graph so far is shown, then the interrupt raised); otherwise it propagates (a
    re-run or a ``why()`` trace stops at once).
    """
    before = dict(ns)
    tree = ast.parse(code)
    if after_assign:
        tree = AfterAssign(after_assign).visit(tree)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    spy = BackwardSpy(budget, held=lambda: _grad_fns(ns))
    forward = CellForward(code, ns)
    caught = (Exception, KeyboardInterrupt) if interrupts else Exception
    value, error = None, None
    try:
        with spy.installed(), context if context is not None else contextlib.nullcontext(), forward:
            try:
                exec(compile_fn(tree, "exec"), ns)
                if last is not None:
                    value = eval(compile_fn(ast.Expression(last.value), "eval"), ns)
            except caught as e:  # shown by the caller; the graph of what ran still helps
                error = e.with_traceback(_without_tracker(e.__traceback__))
    finally:
        _unbind_wrappers(ns, spy.wrappers)
    try:
        captured = capture_namespace(ns, before, value, spy, budget, forward)
    except KeyboardInterrupt:
        if not isinstance(error, KeyboardInterrupt):
            raise
        captured = Captured(Graph(message=INTERRUPTED_AGAIN))  # interrupted twice: stop, show nothing more
    graph = captured.graph
    if error is not None:
        graph = replace(graph, notes=(_error_note(error), *graph.notes))
    store = captured.store
    run = RunInfo(mode="cell", budget_bytes=budget, kept_bytes=store.kept_bytes if store else 0,
                  dropped=store.dropped if store else 0)  # fmt: skip
    captured.graph = replace(graph, run=run)
    return CellResult(captured, value, error)


INTERRUPTED_AGAIN = "The cell was interrupted, and again while gradsight captured its graph: nothing to show."


def _error_note(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "The cell was interrupted (KeyboardInterrupt): the graph shows what it had computed by then."
    return f"The cell raised {type(error).__name__}: {error}"


def _grad_fns(ns: Mapping[str, Any]) -> Iterator[Any]:
    """The nodes of the tensors bound in ``ns`` now (the spy keeps the backward calls that reach them)."""
    for v in list(ns.values()):
        if isinstance(v, torch.Tensor):
            yield v.grad_fn


def _unbind_wrappers(ns: MutableMapping[str, Any], wrappers: Mapping[Any, Any]) -> None:
    """Names the cell bound to the spy's wrappers (``from torch.autograd import grad``) get the
    functions they wrap back, as a plain cell would have bound them. (One held elsewhere, in a closure
    or a list, passes straight through to the original once the cell ended.)"""
    originals = {id(w): (w, original) for w, original in wrappers.items()}
    for name, v in list(ns.items()):
        found = originals.get(id(v))
        if found is not None and found[0] is v:
            ns[name] = found[1]


def _without_tracker(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` without the frames of the source tracker the cell ran under: an op that raised (or
    warned as an error) shows the user's line last, as in a plain cell. (IPython hides frames that
    set ``__tracebackhide__``, but never the last one.)"""
    entries = []
    while tb is not None:
        if tb.tb_frame.f_code.co_filename != source_mod.__file__:
            entries.append(tb)
        tb = tb.tb_next
    for before, after in itertools.pairwise(entries):
        before.tb_next = after
    if entries:
        entries[-1].tb_next = None
    return entries[0] if entries else None


def capture_namespace(ns: MutableMapping[str, Any], before: dict[str, Any], value: Any, spy: BackwardSpy,
                      budget: int, forward: CellForward | None = None) -> Captured:  # fmt: skip
    """The graph of the tensors the cell bound (or rebound) and of its last value."""
    created: dict[str, torch.Tensor] = {}
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.Tensor) and before.get(name) is not v:
            created.setdefault(name, v)
    for i, t in enumerate(_tensors_in(value)):
        if all(t is not c for c in created.values()):
            created[LAST_VALUE if i == 0 else f"{LAST_VALUE} [{i}]"] = t
    if not created:
        return Captured(
            Graph(message="The cell bound no tensors to names: assign what you want to see, e.g. loss = ...")
        )
    names, tensors = _roots(created)
    leaf_names = _leaf_names(ns)
    roots = [t.grad_fn for t in tensors if t.grad_fn is not None]
    options = CaptureOptions(
        leaf_names=leaf_names,
        variables={t.grad_fn: n for n, t in reversed(list(created.items())) if t.grad_fn is not None},
        presaved=spy.presaved,
        observed=spy.observed,
        store=TensorStore(budget),
        module_of=None if forward is None else forward.module_of(roots, ns, leaf_names),
        source_of=None if forward is None or forward.sources is None else forward.sources.source_of,
    )
    captured = captured_of(tensors, options, labels=names)
    graph = _freed_in_cell(captured.graph)
    accumulated = accumulation_note(spy.accumulated(), leaf_names)
    unwatched = None if forward is None else forward.note
    notes = (*graph.notes, *([accumulated] if accumulated else []), *([unwatched] if unwatched else []), *spy.errors)
    captured.graph = replace(graph, notes=notes)
    return captured


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
            paths = _module_paths(ns)
            lookup.ranges = [(start, end, paths[id(m)]) for start, end, m in calls.ranges if id(m) in paths]
            calls.ranges.clear()  # the modules themselves: not kept past the capture
        first, end = self.first, self.end
        earlier: dict[int, str | None] = {}
        order, _, _ = walk(roots)
        for node in order:
            seq = node._sequence_nr()
            if not first <= seq < end and _short_name(node) != ACCUMULATE_GRAD:
                earlier[seq] = _guessed_module(node, leaf_names)
        del order

        def module_of(seq: int) -> str | None:
            return lookup.module_of(seq) if first <= seq < end else earlier.get(seq)

        return module_of


def _guessed_module(node: Any, leaf_names: Mapping[torch.Tensor, str]) -> str | None:
    """What a capture guesses without module calls: the module of the named parameters ``node`` consumes."""
    children = [fn for fn, _ in node.next_functions if fn is not None and _short_name(fn) == ACCUMULATE_GRAD]
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


def _module_paths(ns: Mapping[str, Any]) -> dict[int, str]:
    """id(module) -> its path from the namespace, as :func:`_leaf_names` names parameters
    (``model.layer1`` for ``model.layer1.weight``)."""
    paths: dict[int, str] = {}
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.nn.Module):
            for sub, m in v.named_modules():
                paths.setdefault(id(m), f"{name}.{sub}" if sub else name)
    return paths


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


# -- notes only a cell has --------------------------------------------------------------------------

FREED_IN_CELL = (
    "freed by a backward gradsight did not see — an earlier cell's, another thread's, or one through backward/grad "
    "imported before the cell (from torch.autograd import grad): compute it in this cell, call torch.autograd.grad "
    "or loss.backward() there (on the cell's thread), or pass retain_graph=True"
)
_FREED_NOTE = re.compile(r"Backward already freed the saved tensors of (\d+) node\(s\)")


def _freed_in_cell(graph: Graph) -> Graph:
    """The advice for saved values a backward freed, for a cell: it already is a %%gradsight cell, whose
    backward calls gradsight reads before; what freed them is a backward it did not see."""
    notes = []
    for note in graph.notes:
        found = _FREED_NOTE.match(note)
        if found and "%%gradsight cell" in note:
            note = (
                f"A backward gradsight did not see had already freed the saved tensors of {found.group(1)} node(s), "
                "so their values are gone: one in an earlier cell, on another thread, or one through backward/grad "
                "imported before the cell (from torch.autograd import grad). Compute them in this cell and call "
                "torch.autograd.grad or loss.backward() there, on the cell's thread (gradsight reads what they free "
                "just before), or pass retain_graph=True."
            )
        notes.append(note)
    if tuple(notes) == graph.notes:
        return graph
    nodes = tuple(_reworded(n) for n in graph.nodes)
    return replace(graph, nodes=nodes, notes=tuple(notes))


def _reworded(node: Node) -> Node:
    if not any(isinstance(v, Unavailable) and v.reason == saved_mod.FREED for v in node.saved.values()):
        return node
    saved = {k: Unavailable(FREED_IN_CELL) if isinstance(v, Unavailable) and v.reason == saved_mod.FREED else v
             for k, v in node.saved.items()}  # fmt: skip
    return replace(node, saved=saved)


_SHOWN = 6  # leaves named in an accumulation note


def accumulation_note(accumulated: list[tuple[torch.Tensor, Accumulation]],
                      names: Mapping[torch.Tensor, str]) -> str | None:  # fmt: skip
    """What the graph cannot show: leaves whose ``.grad`` is the sum of several backward calls (or
    added to what it held), while their node shows the last call's gradient."""
    if not accumulated:
        return None
    if len(accumulated) == 1:
        leaf, acc = accumulated[0]
        name = names.get(leaf)
        subject = f"{name}.grad" if name else f"The .grad of a leaf of shape {tuple(leaf.shape)}"
        grad, into = (f"{name}.grad", name) if name else ("its .grad", "that leaf")
        total = _norm(leaf.grad)
        total_text = "" if total is None else f" (norm {total:.4g})"
        before = acc.before_norm() if acc.held() else None
        if acc.calls > 1:
            held = "" if before is None else f", on top of a gradient it already held (norm {before:.4g})"
            sums = "them all" if before is None else "them all and what it held"
            return (f"{subject} accumulated over {acc.calls} backward calls in this cell{held}: the gradient shown "
                    f"flowing into {into} is the last call's; {grad} holds the sum of {sums}{total_text}. Set "
                    f"{grad} = None (or call optimizer.zero_grad()) between backward calls unless you meant to add "
                    "them up.")  # fmt: skip
        return (f"{subject} already held a gradient (norm {before or 0:.4g}) when this cell's backward added to it "
                f"(an earlier cell's backward, or one gradsight did not see): the gradient shown flowing into {into} "
                f"is this cell's; {grad} holds the sum{total_text}. Set {grad} = None (or call "
                "optimizer.zero_grad()) before backward unless you meant to add them up.")  # fmt: skip
    parts = []
    for leaf, acc in accumulated[:_SHOWN]:
        name = names.get(leaf) or f"a leaf of shape {tuple(leaf.shape)}"
        calls = f"{acc.calls} backward calls" if acc.calls > 1 else "1 backward call"
        norm = acc.before_norm() if acc.held() else None
        parts.append(f"{name} ({calls}{'' if norm is None else f' on top of a gradient it held, norm {norm:.4g}'})")
    more = len(accumulated) - _SHOWN
    listed = ", ".join(parts) + (f" and {more} more" if more > 0 else "")
    return (
        f"The .grad of {len(accumulated)} leaves holds the sum of several of this cell's backward calls (or of "
        f"one and what .grad held before): {listed}. The gradient shown flowing into each is the last call's. "
        "Set .grad = None (or call optimizer.zero_grad()) before each backward unless you meant to add them up."
    )


def _norm(t: torch.Tensor | None) -> float | None:
    from .hooks import grad_meta

    meta = grad_meta(t)
    norm = None if meta is None else meta[4]
    return None if norm is None else float(norm)


def _tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _roots(created: dict[str, torch.Tensor]) -> tuple[list[str], list[torch.Tensor]]:
    """Collected tensors that no other collected tensor depends on (and those with no graph)."""
    with_graph = {n: t for n, t in created.items() if t.grad_fn is not None}
    nodes = {t.grad_fn for t in with_graph.values()}
    below: set[Any] = set()
    for node in nodes:
        order, _, _ = walk([node])
        below.update(m for m in order[1:] if m in nodes)
    names, tensors, seen = [], [], set()
    for n, t in created.items():
        node = t.grad_fn
        if node is None and with_graph:
            continue  # a cell that built a graph: tensors without one are inputs, not results
        if node is not None and (node in below or node in seen):
            continue
        seen.add(node)
        names.append(n)
        tensors.append(t)
    return names, tensors


def _leaf_names(ns: MutableMapping[str, Any]) -> dict[torch.Tensor, str]:
    names: dict[torch.Tensor, str] = {}
    for name, v in ns.items():
        if name.startswith("_"):
            continue
        if isinstance(v, torch.nn.Module):
            for pname, p in v.named_parameters():
                names.setdefault(p, f"{name}.{pname}")
    for name, v in ns.items():
        if not name.startswith("_") and isinstance(v, torch.Tensor) and v.is_leaf:
            names.setdefault(v, name)
    return names


class AfterAssign(ast.NodeTransformer):
    """Apply a statement right after every binding of the named variables in the cell's own scope:
    after an assignment, in any block (``for``, ``with``, ``if``, ``try`` too), and inside a walrus
    ``(h := w * 2)``, whose value the rest of its statement already uses. Not in the bodies of
    functions, lambdas and classes the cell defines (their names are their own), except names they
    declare ``global``."""

    def __init__(self, statements: Mapping[str, str]) -> None:
        self.statements = {name: ast.parse(code).body for name, code in statements.items()}
        self.scope: set[str] | None = None  # None: the cell's scope; else the names declared global

    def _binds(self, name: str) -> bool:
        return name in self.statements and (self.scope is None or name in self.scope)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, field, self._expand(block))
        return node

    def _visit_scope(self, node: ast.AST) -> ast.AST:
        outer, self.scope = self.scope, _declared_global(node)
        try:
            return self.generic_visit(node)  # a scope nested in it may declare one of the names global
        finally:
            self.scope = outer

    def visit(self, node: ast.AST) -> Any:
        return self._visit_scope(node) if isinstance(node, _SCOPES) else super().visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        self.generic_visit(node)
        name = node.target.id
        if not self._binds(name):
            return node
        # (h := value) -> ((h := value), <each statement as an expression>, h)[-1]
        parts: list[ast.expr] = [node]
        for stmt in self.statements[name]:
            if isinstance(stmt, ast.Expr):
                parts.append(stmt.value)  # h.requires_grad_(False)
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                parts.append(ast.NamedExpr(target=ast.Name(stmt.targets[0].id, ast.Store()), value=stmt.value))
            else:
                raise ValueError(f"cannot apply {ast.unparse(stmt)!r} inside a walrus binding of {name}")
        parts.append(ast.Name(name, ast.Load()))
        return ast.copy_location(ast.Subscript(ast.Tuple(parts, ast.Load()), ast.Constant(-1), ast.Load()), node)

    def _expand(self, block: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in block:
            out.append(stmt)
            for name in _assigned(stmt):
                if self._binds(name):
                    out.extend(self.statements[name])
        return out


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _declared_global(scope: ast.AST) -> set[str]:
    """The names a function or class body declares ``global`` (not counting nested scopes)."""
    names: set[str] = set()
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global):
            names.update(node.names)
        elif not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))
    return names


def _assigned(stmt: ast.stmt) -> list[str]:
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    names: list[str] = []
    for t in targets:
        names.extend(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _bound_in_cell(node: ast.AST, scope: set[str] | None = None) -> set[str]:
    """Names ``node`` assigns (``=``, ``+=``, ``:=``) in the cell's scope: not the locals of the
    functions and classes it defines, unless declared ``global`` there."""
    out: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _SCOPES):
            out |= _bound_in_cell(child, _declared_global(child))
            continue
        names = _assigned(child) if isinstance(child, ast.stmt) else []
        if isinstance(child, ast.NamedExpr):
            names = [child.target.id]  # (a := torch.randn(...)), also in a comprehension
        out |= {n for n in names if scope is None or n in scope}
        out |= _bound_in_cell(child, scope)
    return out


def cell_names(code: str) -> tuple[set[str], set[str]]:
    """(names the cell reads or writes, names it assigns in its own scope)."""
    tree = ast.parse(code)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return used, _bound_in_cell(tree)


def run_first(code: str, ns: dict[str, Any], compile_fn: Callable[..., Any], budget: int) -> tuple[CellResult, Any]:
    """The cell's real run (in the user's namespace, RNG not forked), and the target that re-runs it
    with the same random numbers."""
    from .guard import rng_state
    from .targets import CellTarget

    target = CellTarget(code, ns, compile_fn, budget, rng=rng_state())
    return run_cell(code, ns, compile_fn, budget, interrupts=True), target
