"""What a debugger re-runs: a model or function, the last step of a live session, a cell — or
nothing, for a tensor's graph. Each target knows which leaves, modules and variables toggles can
name, re-runs with toggles (restoring the user's objects afterwards), explains missing gradients,
and tells what a run ran on (:class:`RunFacts`), so a re-run can say what changed since (an optimizer
step between the run shown and the re-run).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from ..graph import Controls, Graph, LeafControl, Why, WhyReason
from ..runs import RerunError
from ..toggles import ToggleError, Toggles
from . import taint
from . import why as why_mod
from .followed import model_names
from .guard import ModuleGuard, NamespaceGuard
from .live_step import Autocast, Replay, Versions, autocast_state, replaying_autocast, versions
from .names import leaf_aliases, leaf_names_from_params, module_names
from .outputs import flatten_tensors
from .run import RunResult, RunSpec, _tracked_parameters, run
from .specs import call_inputs, reaches_of
from .whatif import BIND, DETACH, FOLLOW, CellBinds, WhatIf, detach_variable

NO_RERUN = (
    "This debugger shows a tensor's graph: it cannot re-run the code that made it. For what-ifs, give gradsight "
    "something it can run: gradsight.debugger(model, inputs=batch, loss=...), gradsight.debugger(lambda: "
    "compute_loss()), or a %%gradsight cell."
)

_MISSED = (
    "This re-run's toggles {keys} did not reach the {name} the cell made: gradsight applies them right after "
    "an assignment to {name} in the cell ({name} = ...), and this {name} was bound otherwise (a for loop, "
    "globals()) or has no such module or parameter."
)


@dataclass(frozen=True)
class RunFacts:
    """What a run ran on, taken right after it (a live step's: at its forward's end): the step it
    replays (live), the parameters' and the inputs' versions; and the parameters that got their
    gradient inside a reentrant checkpoint region (name → norm): no leaves of the graph, yet not
    missing (:func:`finish`, :func:`explain`)."""

    step: int | None = None
    parameters: Versions = ()
    inputs: Versions = ()
    in_checkpoint: Mapping[str, float] = field(default_factory=dict)


# What a run now would run on that differs from a run's facts (Target.changed)
STEP, PARAMETERS, INPUTS = "step", "parameters", "inputs"


class Target(Protocol):
    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult: ...

    def leaves(self) -> Mapping[str, torch.Tensor | None]: ...

    def aliases(self) -> Mapping[str, str]: ...

    def controls(self, graph: Graph) -> Controls: ...

    def trace(self, name: str, toggles: Toggles) -> Why | None: ...

    def facts(self, graph: Graph) -> RunFacts | None: ...

    def changed(self, since: RunFacts) -> tuple[str, ...]: ...


def _changed(since: RunFacts, parameters: Versions, inputs: Versions) -> tuple[str, ...]:
    pairs = ((PARAMETERS, since.parameters, parameters), (INPUTS, since.inputs, inputs))
    return tuple(kind for kind, then, now in pairs if then != now)


def finish(target: Target, graph: Graph, toggles: Toggles, failure: str | None = None,
           inside: Mapping[str, float] | None = None) -> Graph:  # fmt: skip
    """Add what the view needs for what-ifs: controls, and why leaves got no gradient (``failure``:
    the run's backward raised this traceback; ``inside``: :attr:`RunFacts.in_checkpoint`)."""
    traceable = not isinstance(target, TensorTarget)
    aliases = target.aliases() if toggles.requires_grad else {}  # only requires_grad toggles read them
    missing = (why_mod.explain_all(target.leaves(), toggles, graph, traceable, aliases)
               if graph.nodes or graph.message else ())  # fmt: skip
    if failure:
        missing = tuple(_failed(w.name, graph, failure) or w for w in missing)
    missing = tuple(w for w in missing if w.name not in (inside or {}))
    if isinstance(target, CellTarget):
        graph = _cut_worded(graph, why_mod.cut_results(target.code))
    return replace(graph, controls=target.controls(graph), missing=missing)


def _cut_worded(graph: Graph, off: Mapping[str, tuple[WhyReason, str]]) -> Graph:
    """The graph with the general "requires_grad=False: none of its inputs required grad, no_grad, or
    detached" said of a cell's results replaced by which one it was, for those the cell's code shows
    computed under no_grad or detached (:func:`why.cut_results`)."""
    if not off:
        return graph
    from .tensors import why_no_graph

    plain = torch.zeros(())  # the general wording depends on the name only
    general = {why_no_graph(plain, name): text for name, (_, text) in off.items()}
    if graph.message is not None:
        graph = replace(graph, message="\n".join(general.get(line, line) for line in graph.message.split("\n")))
    return replace(graph, notes=tuple(general.get(note, note) for note in graph.notes))


def _failed(name: str, graph: Graph, failure: str) -> Why | None:
    """A leaf the run's backward did not reach because it raised first."""
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == name), None)
    if node is None or node.executed is not False:
        return None
    last = failure.strip().splitlines()[-1] if failure.strip() else "an error"
    return Why(name, "unknown", f"{name} got no gradient because this run's backward raised before reaching it "
               f"({last}): fix that error, shown with the run, and re-run.", where=node.id)  # fmt: skip


def explain(target: Target, graph: Graph, toggles: Toggles, name: str, failure: str | None = None,
            inside: Mapping[str, float] | None = None) -> Why:  # fmt: skip
    """Why ``name`` got no gradient (or a zero one) in ``graph`` (``inside``: :attr:`RunFacts.in_checkpoint`).
    Another path of a shared parameter (``head.weight`` tied to ``emb.weight``) is answered for the name
    the graph shows it under."""
    leaves, aliases = target.leaves(), target.aliases()
    known = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
    shown = aliases.get(name) if name not in leaves and name not in known else None
    if shown is not None:
        return _as_alias(name, shown, graph, explain(target, graph, toggles, shown, failure, inside))
    if name not in leaves and name not in known:
        raise KeyError(f"no leaf named {name!r}; leaves: {', '.join(sorted(set(leaves) | known)) or '(none)'}")
    failed = _failed(name, graph, failure) if failure else None
    if failed is not None:
        return failed
    inside = inside or {}
    if name in inside:
        return Why(name, "unknown", f"{name} got a gradient (norm {inside[name]:.4g}) inside a reentrant checkpoint "
                   "region: the region is one opaque node whose backward re-runs it and differentiates it on its own, "
                   "so its parameters are no leaves of this graph. Use checkpoint(..., use_reentrant=False) to see "
                   "the region's nodes.")  # fmt: skip
    alias = _alias(name, leaves, known)
    if alias is not None:
        return _as_alias(name, alias, graph, explain(target, graph, toggles, alias, failure, inside))
    if isinstance(target, CellTarget):
        off = why_mod.cut_results(target.code).get(name)
        value = leaves.get(name)
        if off is not None and value is not None and value.grad_fn is None and not value.requires_grad:
            return Why(name, *off)
    traceable = not isinstance(target, TensorTarget)
    others = why_mod.other_names(leaves, aliases).get(name, ())
    quick = why_mod.quick(name, leaves.get(name), toggles, graph, traceable=traceable, others=others)
    if quick is not None and quick.reason == "unknown" and not graph.nodes:
        # no graph at all, which says nothing of this leaf: where its own path breaks is what a trace finds
        traced = target.trace(name, toggles)
        return traced if traced is not None and traced.reason != "unknown" else quick
    if quick is not None:
        return quick
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == name), None)
    if node is not None and node.executed is None:
        if isinstance(target, CellTarget):
            text = (f"{name} is in the graph, but no backward ran in this cell, so nothing got a gradient yet: "
                    "add loss.backward() to the cell (or use a runnable debugger) to see gradients.")  # fmt: skip
        else:  # a debugger of a tensor shows its graph as it stands
            text = (f"{name} is in the graph, but this debugger shows a tensor's graph and runs no backward, so it "
                    "sees no gradients: give gradsight the step — gs.debugger(lambda: compute_loss()) or "
                    "gs.debugger(model, inputs=batch, loss=...) — to see them.")  # fmt: skip
        return Why(name, "unknown", text, where=node.id)
    if node is not None:
        text = f"{name} got a gradient in this run (norm {node.grad_norm})."
        if any(note.startswith((f"{name}.grad accumulated", f"{name}.grad already held")) for note in graph.notes):
            text = (f"{name} got a gradient in this run (the last backward call's, norm {node.grad_norm}); "
                    f"{name}.grad holds more than that: see the graph's note.")  # fmt: skip
        return Why(name, "unknown", text, where=node.id)
    traced = target.trace(name, toggles)
    cuts = why_mod.cutting_toggles(toggles)
    if traced is not None and traced.reason == "unknown" and cuts:  # e.g. a node's detach: not in the trace
        return replace(traced, message=f"{traced.message} This re-run's {cuts} may be the cut: turn it off and "
                       "re-run to see.")  # fmt: skip
    if traced is not None:
        return traced
    cut = ("its path was cut (detach, .data, no_grad, a non-differentiable op)"
           + (f", perhaps by this re-run's {cuts}" if cuts else ""))  # fmt: skip
    if not traceable:
        return Why(name, "not_on_path", f"{name} is not in this graph: the tensor was not used to compute it, or "
                   f"{cut}. This debugger cannot re-run the code: a runnable debugger can trace where.")  # fmt: skip
    return Why(name, "not_on_path", f"{name} is not in this graph: the tensor was not used to compute it, or {cut}. "
               "gradsight could not follow it through a re-run to find where (it is bound where a re-run cannot "
               "follow it, such as a for loop's variable, or there is no step to re-run yet).")  # fmt: skip


def _alias(name: str, leaves: Mapping[str, torch.Tensor | None], known: Collection[str]) -> str | None:
    """The name the graph shows ``name``'s tensor under, when that is another name (``L.weight`` for
    ``A.0.weight``: one module reachable two ways, or a for loop's variable)."""
    tensor = leaves.get(name)
    if tensor is None or name in known:
        return None
    return next((other for other in known if leaves.get(other) is tensor), None)


def _as_alias(name: str, alias: str, graph: Graph, answer: Why) -> Why:
    same = f"{name} is the same tensor as {alias}, which the graph shows under that name"
    node = next((n for n in graph.nodes if n.leaf is not None and n.leaf.name == alias), None)
    if node is not None and node.executed and not why_mod.needs_explaining(node):
        norm = f" (norm {node.grad_norm:.4g})" if node.grad_norm is not None else ""
        return Why(name, "unknown", f"{same}: it got a gradient in this run{norm}. Read it as {alias}.",
                   where=node.id)  # fmt: skip
    return replace(answer, name=name, message=f"{same}. {answer.message}")


@dataclass
class TensorTarget:
    """``gradsight.debugger(tensor)``: no re-run; leaves are the ``params`` the user named."""

    names: Mapping[str, torch.Tensor]

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        raise RerunError(NO_RERUN)

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        return dict(self.names)

    def aliases(self) -> Mapping[str, str]:
        return {}

    def controls(self, graph: Graph) -> Controls:
        return Controls(rerun=False, note=NO_RERUN)

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        return None

    def facts(self, graph: Graph) -> RunFacts | None:
        return None

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        return ()


@dataclass
class RunnableTarget:
    """A model or function: re-run with toggles; the taint trace re-runs its forward. Made right
    after the first run, where ``gradsight.debugger`` was called: every re-run and trace runs under
    the autocast regions enabled there, as the first run did — the view's re-runs too, and a
    ``rerun`` called inside another autocast region runs without it."""

    spec: RunSpec
    autocast: tuple[Autocast, bool] = field(default_factory=autocast_state)

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        with replaying_autocast(self.autocast):
            return run(self.spec, watch, toggles)

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        return {name: t for t, name in self.spec.leaf_names.items()}

    def aliases(self) -> Mapping[str, str]:
        """The other paths of shared parameters (tied weights) → the name each is shown under."""
        return leaf_aliases(self.spec.modules, self.spec.leaf_names)

    def controls(self, graph: Graph) -> Controls:
        """The model as it is now (:meth:`RunSpec.rescope`): a layer appended since the last run can be
        toggled at once. Raises :class:`RerunError` for a lazy layer appended since."""
        self.spec.rescope()
        in_graph = {n.leaf.name for n in graph.nodes if n.leaf is not None and n.leaf.name}
        leaves = tuple(LeafControl(name, bool(t.requires_grad), name in in_graph) for name, t in self.leaves().items()
                       if t is not None)  # fmt: skip
        modules = tuple(name for name, _ in self.spec.modules if name)
        return Controls(rerun=True, leaves=leaves, modules=modules, detach_nodes=True)

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        leaf = self.leaves().get(name)
        if leaf is None:
            return None
        from .run import traced_forward

        forward = traced_forward(self.spec, toggles)

        def under_autocast() -> list[torch.Tensor]:
            with replaying_autocast(self.autocast):
                return forward()

        return taint.trace(name, leaf, under_autocast, taint.namer_of(self.spec.modules))

    def facts(self, graph: Graph) -> RunFacts:
        """What a run now runs on: the model as it is now (:meth:`RunSpec.rescope`: a parameter
        replaced since is a parameter, not an input) and the batch, or the function's tensors."""
        self.spec.rescope()
        parameters = list(_tracked_parameters(self.spec.modules))  # not the weights Embedding(max_norm) edits
        inputs = [t for _, t in self.spec.inputs]
        return RunFacts(None, versions(parameters), versions(inputs), dict(self.spec.in_checkpoint))

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        now = self.facts(Graph())
        return _changed(since, now.parameters, now.inputs)


Forward = Callable[[], list[torch.Tensor]]  # a re-run for a taint trace; returns the roots
# ns, statements after assignments, context, binder, the what-if on the user's objects
_Applied = tuple[dict[str, Any], dict[str, str], Any, CellBinds, WhatIf]


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

    def _scope(self) -> tuple[dict[str, torch.nn.Module], dict[str, torch.Tensor], set[str]]:
        from .cell import cell_names

        used, assigned = cell_names(self.code)
        modules: dict[str, torch.nn.Module] = {}
        leaves: dict[str, torch.Tensor] = {}
        for name in sorted(used):
            value = self.ns.get(name)
            if isinstance(value, torch.nn.Module):
                modules.update({f"{name}.{sub}" if sub else name: m for sub, m in module_names(value)})
                leaves.update({f"{name}.{p}": t for t, p in leaf_names_from_params(value).items()})
            elif isinstance(value, torch.Tensor) and value.is_leaf and name not in assigned:
                leaves[name] = value
        return modules, leaves, assigned

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

        modules, leaves, assigned = self._scope()
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
        with fork_rng(self), NamespaceGuard(self.ns, used), ModuleGuard(), whatif.applied(), binds:  # see guard.py
            yield ns, after, whatif.forward(), binds, whatif
        if toggles.apply:  # NamespaceGuard put requires_grad back with everything else
            whatif.keep()

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        from .cell import run_cell
        from .run import _format

        with self._applied(toggles) as (ns, after, context, binds, whatif):
            result = run_cell(self.code, ns, self.compile_fn, self.budget, after, context)
            missed = binds.missed()
            if result.error is not None:  # the cell raised: apply keeps nothing (DESIGN §7)
                whatif.discard()
        if result.error is not None:
            text = _format(result.error)
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
        result.captured.graph = replace(graph, notes=(*graph.notes, *notes))
        return RunResult(result.captured)

    def aliases(self) -> Mapping[str, str]:
        """The other paths of shared parameters (tied weights) in the modules the cell reads → the
        name each is shown under (``model.head.weight`` → ``model.emb.weight``)."""
        from .cell import cell_names

        out: dict[str, str] = {}
        for name in sorted(cell_names(self.code)[0]):
            value = self.ns.get(name)
            if isinstance(value, torch.nn.Module):
                found = leaf_aliases(module_names(value), leaf_names_from_params(value))
                out.update({f"{name}.{path}": f"{name}.{shown}" for path, shown in found.items()})
        return out

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
        controls = [LeafControl(name, bool(t.requires_grad), name in in_graph or id(t) in drawn)
                    for name, t in leaves.items()]  # fmt: skip
        controls += [LeafControl(name, leaf.requires_grad, True) for name, leaf in in_graph.items()
                     if name in assigned]  # fmt: skip
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
                with self._applied(replace(toggles, apply=False), follow=follow, track=track) as (ns, after, c, b, _):
                    running[0] = ns
                    run_cell(self.code, ns, self.compile_fn, 0, after, c)
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
        parameters = list(_tracked_parameters(list(modules.items())))
        ids = {id(p) for m in modules.values() for p in m.parameters(recurse=False)}
        inputs = [t for t in leaves.values() if id(t) not in ids]
        return RunFacts(None, versions(parameters), versions(inputs))

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        now = self.facts(Graph())
        return _changed(since, now.parameters, now.inputs)


class LiveTarget:
    """A live session: a re-run replays the last recorded step's call, with the gradient its output
    received (the model's vector–Jacobian product), so no loss function is needed. Leaves and modules
    are the model's as they are now (a submodule replaced since the debugger attached is named, and
    the replaced one not kept). As a runnable re-run, it tells an in-place edit of the step's inputs
    (put back after later re-runs: ``edited_inputs`` lasts while the step is the last) and puts back
    the generators the model's forwards reach by name."""

    def __init__(self, session: Any, model: torch.nn.Module, budget: int, source_lines: bool) -> None:
        self.session = session
        self.model = model
        self.budget = budget
        self.source_lines = source_lines
        self.in_checkpoint: dict[str, float] = {}  # the last re-run's (RunSpec.in_checkpoint)
        # inputs of the last step a re-run saw edited in place: put back after each later re-run (RunSpec)
        self.edited_inputs: dict[int, torch.Tensor] = {}

    def _names(self) -> tuple[list[tuple[str, torch.nn.Module]], dict[torch.Tensor, str]]:
        return model_names(self.model)

    def _spec(self) -> RunSpec:
        replay: Replay | None = self.session.last_call
        if replay is None:
            raise RerunError(
                "Nothing to re-run yet: run a training step (output = model(batch); loss.backward()) first; "
                "the live debugger re-runs the last step it recorded."
            )
        model = self.model

        def call() -> Any:  # under the autocast regions the step's forward ran under
            with replaying_autocast(replay.autocast):
                return model(*replay.args, **replay.kwargs)

        modules, names = self._names()
        inputs = call_inputs(replay.args, replay.kwargs)
        held = {id(t) for _, t in inputs}  # an earlier step's batch is let go
        self.edited_inputs = {i: t for i, t in self.edited_inputs.items() if i in held}
        return RunSpec(call=call, modules=modules, leaf_names=names, grad_output=replay.grads, budget=self.budget,
                       source_lines=self.source_lines, rng=replay.rng, origin=replay.origin, inputs=inputs,
                       edited_inputs=self.edited_inputs, reaches=reaches_of(modules, None),
                       retaining=[t for _, t in inputs if not t.is_leaf],
                       fresh="run another step on a fresh batch (a re-run replays the last step)")  # fmt: skip

    def rerun(self, toggles: Toggles, watch: Collection[str]) -> RunResult:
        spec = self._spec()
        with self.session.paused():
            result = run(spec, watch, toggles)
        self.in_checkpoint = dict(spec.in_checkpoint)
        return result

    def leaves(self) -> Mapping[str, torch.Tensor | None]:
        return {name: t for t, name in self._names()[1].items()}

    def aliases(self) -> Mapping[str, str]:
        """The other paths of shared parameters (tied weights), as the model is now."""
        return leaf_aliases(*self._names())

    def controls(self, graph: Graph) -> Controls:
        modules, names = self._names()
        base = RunnableTarget(RunSpec(call=lambda: None, modules=modules, leaf_names=names)).controls(graph)
        if self.session.last_call is None:
            return replace(
                base, rerun=False, note="Run a training step first: the live debugger re-runs the last step."
            )
        return base

    def trace(self, name: str, toggles: Toggles) -> Why | None:
        leaf = self.leaves().get(name)
        if leaf is None or self.session.last_call is None:
            return None
        from .run import traced_forward

        with self.session.paused():
            spec = self._spec()
            return taint.trace(name, leaf, traced_forward(spec, toggles), taint.namer_of(spec.modules))

    def _now(self, replay: Replay) -> tuple[Versions, Versions]:
        """The versions of what a re-run of ``replay`` would run on now: the model's parameters (as
        named now) and the step's inputs."""
        return versions(list(self._names()[1])), versions(flatten_tensors((replay.args, replay.kwargs)))

    def facts(self, graph: Graph) -> RunFacts | None:
        """A step's: what it ran on (its forward's); a re-run's: what it ran on, the step replayed now."""
        replay: Replay | None = self.session.last_call
        if replay is None:
            return None
        if graph.run.mode == "live":
            if graph.run.step != replay.step:  # published after a later step's end (another thread)
                return None
            return RunFacts(replay.step, replay.parameters, replay.inputs, replay.in_checkpoint)
        return RunFacts(replay.step, *self._now(replay), dict(self.in_checkpoint))

    def changed(self, since: RunFacts) -> tuple[str, ...]:
        replay: Replay | None = self.session.last_call
        if replay is None:
            return ()
        if replay.step != since.step:  # a re-run replays the last step, not the one shown
            return (STEP,)
        return _changed(since, *self._now(replay))
