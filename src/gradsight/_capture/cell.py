"""Run a %%gradsight cell and capture the graphs of the tensors it created.

The cell runs in the user's namespace. Afterwards, the tensors it bound to names (also inside the
containers it bound: ``outs['a']``, ``out.loss``) and its last expression's value are collected; the
roots are those that no other collected tensor depends on. When none has a graph, a backward the cell
ran on a loss it computed but bound to no name is shown instead (``cell_results``). Leaves are named
after the user's variables, parameters after ``<module variable>.<param path>``.

While it runs, the cell's forward is watched as a runnable run's is (``cell_forward.CellForward``): a
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
import symtable
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import torch

from ..graph import Graph, RunInfo
from . import source as source_mod
from .cell_forward import CellForward
from .cell_given import GradsBefore, given, not_given
from .cell_grads import Grads
from .cell_hidden import HiddenGrads
from .cell_notes import accumulation_note, freed_in_cell, grads_worded, with_presaved_stats
from .cell_results import UNBOUND_SHOWN, backward_roots, held, results, tops
from .cell_scope import namespace_leaf_names
from .records import Captured, CaptureOptions
from .spy import BackwardSpy
from .store import TensorStore
from .tensors import captured_below, captured_of


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
             interrupts: bool = False, grads: Grads | None = None,
             hidden: HiddenGrads | None = None) -> CellResult:  # fmt: skip
    """Execute ``code`` in ``ns`` and capture; ``compile_fn(source_ast, mode)`` compiles.

    ``after_assign`` maps variable names to a statement run right after each assignment to them
    (what-if toggles: ``x = x.detach()``); ``context`` wraps the execution (e.g. ``torch.no_grad()``).
    ``interrupts``: a ``KeyboardInterrupt`` in the cell is its error, as an exception is (the cell the
    user runs: the graph so far is shown, then the interrupt raised); otherwise it propagates (a
    re-run or a ``why()`` trace stops at once). ``grads``: told the leaves each backward call reaches
    before it adds to their ``.grad`` (``cell_grads``); the copies it keeps (``kept_bytes``) count in the
    budget. ``hidden``: hooks the reentrant checkpoint nodes of each backward call (``cell_hidden``).
    """
    before = dict(ns)
    tree = ast.parse(code)
    if after_assign:
        tree = AfterAssign(after_assign).visit(tree)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    grads_before = GradsBefore(ns, cell_names(code)[0])  # which .grad the cell's backward gave nothing
    spy = BackwardSpy(budget, held=lambda: held(ns, before), grads=grads, nodes=None if hidden is None else hidden.hook)
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
        if hidden is not None:
            hidden.unhook()
    copies = grads.kept_bytes if grads is not None else 0
    try:
        captured = capture_namespace(ns, before, value, spy, max(budget - copies, 0), forward, code, grads_before)
    except KeyboardInterrupt:
        if not isinstance(error, KeyboardInterrupt):
            raise
        captured = Captured(Graph(message=INTERRUPTED_AGAIN))  # interrupted twice: stop, show nothing more
    graph = captured.graph
    if error is not None:
        graph = replace(graph, notes=(_error_note(error), *graph.notes))
    store = captured.store
    run = RunInfo(mode="cell", budget_bytes=budget, kept_bytes=(store.kept_bytes if store else 0) + copies,
                  dropped=store.dropped if store else 0)  # fmt: skip
    captured.graph = replace(graph, run=run)
    return CellResult(captured, value, error)


INTERRUPTED_AGAIN = "The cell was interrupted, and again while gradsight captured its graph: nothing to show."


def _error_note(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "The cell was interrupted (KeyboardInterrupt): the graph shows what it had computed by then."
    return f"The cell raised {type(error).__name__}: {error}"


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
                      budget: int, forward: CellForward | None = None, code: str = "",
                      grads_before: GradsBefore | None = None) -> Captured:  # fmt: skip
    """The graph of the tensors the cell (``code``) bound (or rebound, also in containers) and of its
    last value; when none has a graph, of the backward it ran on a loss it made and bound to no name
    (``cell_results``). ``grads_before``: the leaves' ``.grad`` before the cell ran (``cell_given``)."""
    created = results(ns, before, value)
    unbound: tuple[Any, ...] = ()
    if forward is not None and all(t.grad_fn is None for t in created.values()):
        unbound = backward_roots(spy.roots, forward.first, forward.end)
    backward_ran = bool(spy.observed)
    if not created and not unbound:
        nothing = Graph(message="The cell bound no tensors to names: assign what you want to see, e.g. loss = ...")
        return Captured(grads_worded(nothing, created, {}, backward_ran, _not_given(ns, code, spy, grads_before)))
    names, tensors = tops(created)
    leaf_names = namespace_leaf_names(ns)
    roots = list(unbound) or [t.grad_fn for t in tensors if t.grad_fn is not None]
    options = CaptureOptions(
        leaf_names=leaf_names,
        variables={t.grad_fn: n for n, t in reversed(list(created.items())) if t.grad_fn is not None},
        presaved=spy.presaved,
        observed=spy.observed,
        produced=spy.produced,
        store=TensorStore(budget),
        module_of=None if forward is None else forward.module_of(roots, ns, leaf_names),
        source_of=None if forward is None or forward.sources is None else forward.sources.source_of,
    )
    if unbound:
        captured = captured_below(unbound, options, (UNBOUND_SHOWN,))
    else:
        captured = captured_of(tensors, options, labels=names)
    if not captured.graph.nodes:  # a .grad the cell read, or a backward through an earlier cell's graph
        shown = dict(zip(names, tensors, strict=True))
        captured.graph = grads_worded(
            captured.graph, shown, leaf_names, backward_ran, _not_given(ns, code, spy, grads_before)
        )
    graph = freed_in_cell(with_presaved_stats(captured))
    accumulated = accumulation_note(spy.accumulated(), leaf_names)
    unwatched = None if forward is None else forward.note
    notes = (*graph.notes, *([accumulated] if accumulated else []), *([unwatched] if unwatched else []), *spy.errors)
    captured.graph = replace(graph, notes=notes)
    return captured


def _not_given(ns: Mapping[str, Any], code: str, spy: BackwardSpy,
               before: GradsBefore | None) -> dict[str, torch.Tensor] | None:  # fmt: skip
    """The leaves the cell uses that hold a ``.grad`` its backward calls gave nothing (``cell_given``); None
    when none ran, one the spy could not watch, or the ``.grad`` before the cell is not known (it cannot tell)."""
    if not spy.observed or spy.errors or before is None:
        return None
    return not_given(ns, cell_names(code)[0], given(spy.observed), before)


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
    """(names the cell reads or writes, names it assigns in its own scope).

    The names of the cell's own scope, and those the functions, lambdas, classes and comprehensions it
    defines read from it; not their parameters and locals: with ``def forward(self, x): x = ...`` the
    cell does not use an ``x`` an earlier cell bound, but with ``def f(): return w * 2`` it uses ``w``.

    >>> sorted(cell_names("y = f(a, key=lambda x: x * w)")[0])
    ['a', 'f', 'w', 'y']
    """
    tree = ast.parse(code)
    return _used_names(code, tree), _bound_in_cell(tree)


def _used_names(code: str, tree: ast.AST) -> set[str]:
    """The names resolved in the cell's (global) scope, as Python's own symbol table resolves them."""
    try:
        top = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError:  # parses but does not compile (``nonlocal`` at the top): it will not run either
        return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used = {s.get_name() for s in top.get_symbols()}
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        used.update(s.get_name() for s in table.get_symbols() if s.is_global())  # read, not bound, there
        stack.extend(table.get_children())
    return {n for n in used if not n.startswith(".")}  # not the comprehensions' hidden ``.0``


def run_first(code: str, ns: dict[str, Any], compile_fn: Callable[..., Any], budget: int) -> tuple[CellResult, Any]:
    """The cell's real run (in the user's namespace, RNG not forked), and the target that re-runs it
    with the same random numbers."""
    from .cell_target import CellTarget
    from .guard import rng_state

    target = CellTarget(code, ns, compile_fn, budget, rng=rng_state())
    target.remember_grads()
    result = run_cell(code, ns, compile_fn, budget, interrupts=True, grads=target.first_grads, hidden=target.hidden)
    if target.first_grads is not None:
        target.first_grads.settle()
    if target.first_state is not None:
        target.first_state.settle()
    return result, target
