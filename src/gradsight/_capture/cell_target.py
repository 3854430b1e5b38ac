"""What a ``%%gradsight`` cell's debugger re-runs (:class:`CellTarget`): the cell's code again, in a
copy of the user's namespace, with toggles applied to the tensors and modules it names; which leaves,
modules and variables toggles can name; a taint trace through a re-run; what it ran on.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..graph import Controls, Graph, LeafControl, Why, WhyReason
from ..runs import RerunError
from ..toggles import ToggleError, Toggles
from . import taint
from .cell_cuts import cut_results
from .cell_grads import FirstGrads, RerunGrads
from .cell_hidden import HiddenGrads
from .cell_scope import Scope, namespace_leaf_names, renamed_aliases, scope_key, scope_of
from .cell_start import FirstState
from .facts import RunFacts, changed_since, tracked_parameters, versions
from .guard import ModuleGuard
from .names import leaf_aliases, leaf_names_from_params, module_names
from .namespace_guard import NamespaceGuard, reachable, with_helpers
from .run import RunResult
from .summary import dtype_name
from .tracebacks import user_traceback
from .whatif import BIND, DETACH, FOLLOW, CellBinds, RefusedToggle, WhatIf, detach_variable

_MISSED = (
    "This re-run's toggles {keys} did not reach the {name} the cell made: gradsight applies them right after "
    "an assignment to {name} in the cell ({name} = ...), and this {name} was bound otherwise (a for loop, "
    "globals()) or has no such module or parameter."
)


Forward = Callable[[], list[torch.Tensor]]  # a re-run for a taint trace; returns the roots
# ns, statements after assignments, context, binder, the what-if on the user's objects, the .grad it replaced,
# the notes of what the re-run started from (cell_start)
_Applied = tuple[dict[str, Any], dict[str, str], Any, CellBinds, WhatIf, RerunGrads, list[str]]


@dataclass
class CellTarget:
    """A ``%%gradsight`` cell: re-runs execute its code again, in a *copy* of the user's namespace
    (so its assignments never rebind the user's variables), with toggles applied to the tensors and
    modules it names, and the RNG state it first ran with."""

    code: str
    ns: dict[str, Any]
    compile_fn: Any
    budget: int
    rng: Any = None
    first_grads: FirstGrads | None = None  # the leaves' .grad before the first run (remember_grads)
    first_state: FirstState | None = None  # what else the first run started from (remember_grads)
    hidden: HiddenGrads = field(default_factory=HiddenGrads)  # what reentrant checkpoint regions gave
    _kept_scope: tuple[tuple[Any, ...], Scope] | None = field(default=None, init=False, repr=False, compare=False)

    def remember_grads(self) -> None:
        """Before the cell's first run: its re-runs start each leaf's ``.grad`` from what it holds now,
        and the tensors the cell edits in place, the optimizers it steps and the generators it reaches
        from what they hold now (``cell_start``: its copies come first in the budget, and count in the
        run's ``kept_bytes`` with the gradients')."""
        from .cell import cell_names

        try:
            used = cell_names(self.code)[0]
        except SyntaxError:  # the cell does not compile: it will not run, nor re-run
            return
        self.first_state = FirstState(self.code, self.ns, used, self.budget)
        copied = self.first_state.kept_bytes
        self.first_grads = FirstGrads(max(self.budget - copied, 0), reachable(self.ns, used))
        self.first_grads.kept_bytes += copied  # what run_cell counts in the run's budget
        self.hidden.watch(self.leaves())

    def _names(self) -> Scope:
        """What toggles name, by the names the graph shows (:func:`cell_scope.scope_of`). It walks every
        module of the namespace and a re-run asks about ten times: computed again only when what it reads
        changed (:func:`cell_scope.scope_key`: a later cell's new layer, a rebound name)."""
        from .cell import cell_names

        used, assigned = cell_names(self.code)
        key = scope_key(self.ns, used)
        if self._kept_scope is None or self._kept_scope[0] != key:
            self._kept_scope = (key, scope_of(self.ns, used, assigned))
        return self._kept_scope[1]

    def _scope(self) -> tuple[dict[str, torch.nn.Module], dict[str, torch.Tensor], set[str]]:
        scope = self._names()
        return scope.modules, scope.leaves, scope.assigned

    @contextmanager
    def _applied(self, toggles: Toggles, follow: Mapping[str, torch.nn.Parameter] | None = None,
                 track: str | None = None) -> Iterator[_Applied]:  # fmt: skip
        """The re-run's namespace, its inserted statements, the forward's context, the binder and the
        what-if, inside the guards, with ``toggles`` applied; ``apply`` keeps the requires_grad flips of
        the user's objects once the guard has put everything back, unless the caller said the run
        failed (:meth:`WhatIf.discard`: the cell caught its error); toggles of the tensor variables the
        cell assigns are statements inserted after the assignments (a trace re-runs with them too).
        ``track``: a variable the cell assigns whose every new value a taint trace follows
        (``taint.follow``, before that variable's own toggles)."""
        from .cell import cell_names
        from .guard import fork_rng

        refused = None if self.first_state is None else self.first_state.refused()
        if refused is not None:  # before anything is changed: nothing ran
            raise RerunError(refused)
        scope = self._names()
        unreached = scope.unreached(toggles)
        if unreached is not None:  # accepted as a name the graph shows, but nothing here would apply it
            raise RefusedToggle(unreached)
        modules, leaves, assigned = scope.modules, scope.leaves, scope.assigned
        # Names the cell binds to a module (they had one before): a re-run makes a new module, and the
        # toggles under the name go to it when the cell binds it (CellBinds), not to the user's one.
        rebound = sorted(n for n in assigned if isinstance(self.ns.get(n), torch.nn.Module))
        after: dict[str, str] = {}
        ns = dict(self.ns)
        for name, value in toggles.requires_grad.items():
            current = self.ns.get(name)
            if name in assigned and isinstance(current, torch.Tensor) and not current.is_leaf:
                raise ToggleError(
                    f"requires_grad: {name} is computed in the cell (it has a grad_fn), and only leaves have a "
                    f"requires_grad of their own; use detach=[{name!r}] to cut it from the graph, or toggle the "
                    "leaves it is computed from"
                )
            if name in assigned and name not in rebound:
                after[name] = f"{name}.requires_grad_({value})"
        for name in toggles.detach:
            if name in assigned and name not in rebound:
                statement = f"{name} = {DETACH}({name!r}, {name})"
                after[name] = "; ".join(filter(None, [after.get(name), statement]))
            elif name not in modules and isinstance(ns.get(name), torch.Tensor):
                ns[name] = ns[name].detach()
        ns[DETACH] = detach_variable
        for name in rebound:
            after[name] = "; ".join(filter(None, [after.get(name), f"{BIND}({name!r}, {name})"]))
        if track is not None:
            ns[FOLLOW] = taint.follow
            after[track] = "; ".join(filter(None, [f"{FOLLOW}({track})", after.get(track)]))
        existing = {k: v for k, v in toggles.requires_grad.items() if k not in assigned or k in rebound}
        whatif = WhatIf(replace(toggles, requires_grad=existing), modules, leaves)
        used = cell_names(self.code)[0]
        # Every module name the cell uses: one it binds some other way (a for loop) is reported missed.
        held = [n for n in used if isinstance(self.ns.get(n), torch.nn.Module)]
        binds = ns[BIND] = CellBinds(toggles, ns, self.ns, held, follow, leaves)
        first = self.first_grads if self.first_grads is not None else FirstGrads(0)
        start = self.first_state if self.first_state is not None else FirstState("", {}, (), 0)
        # started before ModuleGuard: it ends after it, so a buffer the cell edits goes back to the user's values
        with fork_rng(self), NamespaceGuard(self.ns, used) as guard, start.started(self.ns, used, guard) as started, \
                ModuleGuard(), whatif.applied(), binds, first.restored(reachable(self.ns, used)) as grads:  # fmt: skip
            yield ns, after, whatif.forward(), binds, whatif, grads, started
        if toggles.apply:  # NamespaceGuard put requires_grad back with everything else
            whatif.keep()

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        from .cell import run_cell

        with self._applied(toggles) as (ns, after, context, binds, whatif, grads, started):
            self.hidden.watch(self.leaves(), self.hidden.known)
            result = run_cell(
                self.code, ns, self.compile_fn, self.budget, after, context, grads=grads, hidden=self.hidden
            )
            if result.captured is not None:
                self.hidden.read(result.captured.graph)
            missed = binds.missed()
            emptied = grads.note(namespace_leaf_names(self.ns))
            if result.error is not None:  # the cell raised: apply keeps nothing (DESIGN §7)
                whatif.discard()
        if result.error is not None:
            text = user_traceback(result.error)
            if "does not require grad and does not have a grad_fn" in str(result.error) and not toggles.empty:
                text = (
                    "The cell's backward() found no graph to differentiate: with this re-run's toggles (no_grad, "
                    "inference_mode, detach or requires_grad=False) what it differentiates no longer depends on "
                    "anything that requires grad — that is the answer to this what-if. Turn a toggle off to get "
                    "the graph back.\n\n" + text
                )
            return RunResult(None, error=text)
        graph = result.captured.graph
        notes = tuple(_MISSED.format(name=name, keys=", ".join(keys)) for name, keys in missed)
        notes += (emptied,) if emptied else ()
        notes += tuple(started)
        result.captured.graph = replace(graph, notes=(*graph.notes, *notes))  # aliases: explain.finish
        if self.first_state is not None:  # a graph the user gets names what a later cell changed: named once
            self.first_state.told()
        return RunResult(result.captured)

    traceable = True  # a re-run of the cell's code (a class attribute: not a field)

    def cuts(self) -> Mapping[str, tuple[WhyReason, str]]:
        """The variables the cell's code computes under no_grad or detaches, and why (:func:`cut_results`)."""
        return cut_results(self.code, self.ns)

    def no_backward(self, name: str) -> str:
        calls = backward_calls(self.code)
        if calls:  # in a branch or a function that did not run, or on another graph
            return (f"{name} is in the graph, but no backward ran through it in this cell, so nothing got a gradient "
                    f"yet: the cell's {calls[0]} did not run, or differentiated something {name} does not reach. "
                    f"Call backward on a loss computed from {name} to see gradients.")  # fmt: skip
        return (f"{name} is in the graph, but no backward ran in this cell, so nothing got a gradient yet: "
                "add loss.backward() to the cell (or use a runnable debugger) to see gradients.")  # fmt: skip

    def raised_before_backward(self, name: str, error: str) -> str:
        """Why ``name`` got nothing when the cell raised ``error`` (the exception's line) before any
        backward ran: the backward the cell has, which the error kept from running (or that it has none)."""
        from .why_failed import short

        calls = backward_calls(self.code)
        if not calls:
            return (f"{name} is in the graph, but the cell raised ({short(error)}) and calls no backward, so nothing "
                    "got a gradient. Fix that error, shown with the cell, and add loss.backward() to it to see "
                    "gradients.")  # fmt: skip
        return (f"{name} is in the graph, but the cell raised ({short(error)}) before its backward ({calls[0]}) ran, "
                "so nothing got a gradient. Fix that error, shown with the cell, and run the cell again: its "
                f"backward then runs, and why() can say what {name} got.")  # fmt: skip

    def aliases(self) -> Mapping[str, str]:
        """The other paths of shared parameters (tied weights) in the modules the cell reads, and the
        paths of leaves and modules the graph shows under another name (``wrapped.inner.0`` of
        ``wrapped = Wrapper(model)``: ``model.0``) → the name each is shown under."""
        from .cell import cell_names

        tied: list[tuple[str, str]] = []
        for name in sorted(with_helpers(self.ns, cell_names(self.code)[0])):
            value = self.ns.get(name)
            if isinstance(value, torch.nn.Module):
                found = leaf_aliases(module_names(value), leaf_names_from_params(value))
                tied.extend((f"{name}.{path}", f"{name}.{shown}") for path, shown in found.items())
        return renamed_aliases(tied, self._names())

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        """The leaves the cell reads, and those it creates (``a = torch.randn(3, requires_grad=True)``:
        explained like the others, a taint trace following each one a re-run binds to the name). One
        it creates without requires_grad is no missing gradient, but ``why()`` answers for it."""
        _, leaves, assigned = self._scope()
        made = {n: v for n in sorted(assigned) if isinstance(v := self.ns.get(n), torch.Tensor) and v.is_leaf}
        return {**leaves, **made}

    def controls(self, graph: Graph) -> Controls:
        modules, leaves, assigned = self._scope()
        in_graph = {n.leaf.name: n.leaf for n in graph.nodes if n.leaf is not None and n.leaf.name}
        # a tensor reached under two names (L and A.0, or a for loop's variable) is in the graph as either
        drawn = {id(t) for name, t in leaves.items() if name in in_graph}
        controls = [LeafControl(name, bool(t.requires_grad), name in in_graph or id(t) in drawn, dtype_name(t.dtype))
                    for name, t in leaves.items()]  # fmt: skip
        # Every leaf the cell made keeps its control, drawn or not: one a re-run toggled off is no leaf
        # node of that graph, and the view's box to switch it back on is drawn from these controls.
        made = {n: v for n in sorted(assigned) if isinstance(v := self.ns.get(n), torch.Tensor) and v.is_leaf}
        controls += [LeafControl(name, bool(t.requires_grad), name in in_graph, dtype_name(t.dtype))
                     for name, t in made.items() if name not in leaves]  # fmt: skip
        controls += [LeafControl(name, leaf.requires_grad, True, leaf.dtype) for name, leaf in in_graph.items()
                     if name in assigned and name not in made and name not in leaves]  # fmt: skip
        # only tensors can be detached or made to require grad (a module's name is a module path)
        variables = tuple(n for n in sorted(assigned) if isinstance(self.ns.get(n), torch.Tensor))
        return Controls(rerun=True, leaves=tuple(controls), modules=tuple(modules), variables=variables)

    def not_a_tensor(self, names: Collection[str]) -> str | None:
        """Why a toggle naming one of ``names`` cannot apply, if one is a variable the cell binds to
        something other than a tensor or a module (``k = 3``), or None."""
        modules, _, assigned = self._scope()
        for name in names:
            value = self.ns.get(name)
            if name in assigned and name not in modules and not isinstance(value, torch.Tensor):
                return (
                    f"{name} is {type(value).__name__}, not a tensor: only tensor variables can be detached or "
                    f"have their requires_grad toggled (the cell binds {name} = ...; toggle the tensors it is "
                    "used with instead)"
                )
        return None

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        from .cell import run_cell

        modules, leaves, assigned = self._scope()
        leaf = leaves.get(name)
        made = name in assigned and name not in leaves  # a tensor the cell makes: the re-run makes another
        if leaf is None and not made:
            return None
        # A parameter of a module the cell makes: the re-run makes another one. A stand-in takes its
        # place (and data) when the cell binds the module, and the trace follows the stand-in.
        owner = name.split(".")[0]
        stand_in = torch.nn.Parameter(torch.empty(0))
        seen: dict[str, bool] = {}
        running: list[dict[str, Any]] = [{}]  # the re-run's namespace (as it runs): names the modules it binds

        def namer(module: Any) -> str | None:
            """The path of a module the re-run toggles: the user's, or one the cell binds anew."""
            bound = [(var, v) for var, v in running[0].items() if var in assigned and isinstance(v, torch.nn.Module)]
            for var, value in bound:
                found = next((f"{var}.{sub}" if sub else var for sub, m in module_names(value) if m is module), None)
                if found is not None:
                    return found
            return next((k for k, m in modules.items() if m is module), None)

        def forward(follow: dict[str, torch.nn.Parameter], track: str | None = None) -> Forward:
            def cell() -> list[torch.Tensor]:
                applied = self._applied(replace(toggles, apply=False), follow=follow, track=track)
                with applied as (ns, after, c, b, _, grads, _):
                    running[0] = ns
                    run_cell(self.code, ns, self.compile_fn, 0, after, c, grads=grads)
                    seen.update(followed=name in b.followed, rebound=ns.get(owner) is not self.ns.get(owner))
                return [v for k, v in ns.items() if isinstance(v, torch.Tensor) and self.ns.get(k) is not v]

            return cell

        if made:  # followed from each binding of the name in the re-run (not one in a for loop)
            return taint.trace(name, None, forward({}, track=name), namer)
        if owner in assigned:
            why = taint.trace(name, stand_in, forward({name: stand_in}), namer)
            if seen.get("followed"):
                return why
        why = taint.trace(name, leaf, forward({}), namer)
        # The module the cell left bound has no such parameter, or was bound where gradsight cannot see.
        return None if seen.get("rebound") else why

    def facts(self, graph: Graph) -> RunFacts:
        modules, leaves, _ = self._scope()
        parameters = list(tracked_parameters(list(modules.items())))
        ids = {id(p) for m in modules.values() for p in m.parameters(recurse=False)}
        inputs = [t for t in leaves.values() if id(t) not in ids]
        return RunFacts(None, versions(parameters), versions(inputs), self.hidden.of(graph))

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        now = self.facts(Graph())
        return changed_since(since, now.parameters, now.inputs)


def backward_calls(code: str) -> list[str]:
    r"""The backward calls in a cell's code, as written, in order (none when it does not parse):
    ``x.backward()``, ``torch.autograd.backward(...)``, ``torch.autograd.grad(...)`` and ``grad(...)``.

    >>> backward_calls("loss = f(x)\nloss.backward()\ng = torch.autograd.grad(loss, [x])")
    ['loss.backward()', 'torch.autograd.grad(loss, [x])']
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_backward(node.func):
            found.append((node.lineno, node.col_offset, ast.unparse(node)))
    return [text for _, _, text in sorted(found)]


def _is_backward(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("backward", "grad")  # from torch.autograd import backward, grad
    if isinstance(func, ast.Attribute):  # x.backward(), not x.grad(...) unless x is autograd
        return func.attr == "backward" or (func.attr == "grad" and ast.unparse(func.value).endswith("autograd"))
    return False
