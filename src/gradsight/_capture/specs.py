"""What a runnable debugger runs: a :class:`~.run.RunSpec` from a model and its inputs, or from a
function, with the names of the modules and tensors it can reach (to name nodes and leaves; brought
up to date before each run when the model changed since, :class:`Rescope`), and the checks that
keep a run from changing the user's model (lazy modules must be initialized first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.utils._pytree import tree_leaves, tree_map

from ..config import options
from .fn_scope import one_level, scope_of
from .modules import SHARED_HOOKS, is_compiled
from .names import leaf_names_from_params, module_names
from .outputs import flatten_tensors
from .run import RunSpec


def spec_for_model(model: torch.nn.Module, inputs: Any, loss: Any, grad_output: Any, budget: int,
                   source_lines: bool) -> RunSpec:  # fmt: skip
    if keyword_arguments(inputs):
        call = lambda: model(**inputs)  # noqa: E731
    elif positional_arguments(inputs):
        call = lambda: model(*inputs)  # noqa: E731
    else:
        call = lambda: model(inputs)  # noqa: E731

    def scope() -> dict[str, Any]:
        names = leaf_names_from_params(model)
        for name, t in _input_tensors(inputs):
            names.setdefault(t, name)
        modules = module_names(model)
        _check_materialized(modules)
        return {"modules": modules, "leaf_names": names, "reaches": reaches_of(modules, loss),
                "source_lines": source_lines and not any(is_compiled(m) for _, m in modules)}  # fmt: skip

    tensors = [t for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)]
    spec = RunSpec(call=call, loss=loss, grad_output=grad_output, budget=budget,
                   keep_all_below=options.keep_all_below, retaining=[t for t in tensors if not t.is_leaf],
                   **scope())  # fmt: skip
    spec.inputs = [(spec.leaf_names.get(t, "the inputs"), t) for t in tensors if not isinstance(t, torch.nn.Parameter)]
    spec.scope = Rescope(spec, scope)
    return spec


class Rescope:
    """``RunSpec.scope``: a spec's names and modules brought up to date when the model changed since
    the last run — a parameter replaced, a layer appended, a global rebound to another model. Each run
    compares the ids of every module's parameters and children (``modules``: the spec's, or for a
    function its near ring's, :class:`DeepUse`) and of what the function reaches by name (``roots``)
    with the last ones: about 0.2 ms for 1,000 parameters; only a change rebuilds them (``build``, 1 ms)."""

    def __init__(self, spec: RunSpec, build: Callable[[], dict[str, Any]], roots: Callable[[], list[int]] = list,
                 modules: Callable[[], Sequence[tuple[str, torch.nn.Module]]] | None = None) -> None:  # fmt: skip
        self._build, self._roots, self._modules = build, roots, modules
        self._key = self._key_of(spec)

    def _key_of(self, spec: RunSpec) -> list[int]:
        modules = spec.modules if self._modules is None else self._modules()
        return [*self._roots(), *(id(v) for _, m in modules for d in (m._parameters, m._modules)
                                  for v in d.values())]  # fmt: skip

    def __call__(self, spec: RunSpec) -> bool:
        key = self._key_of(spec)
        if key == self._key:
            return False
        for name, value in self._build().items():
            setattr(spec, name, value)
        self._key = self._key_of(spec)
        return True


def reaches_of(modules: Sequence[tuple[str, torch.nn.Module]], loss: Any) -> tuple[Callable[..., Any], ...]:
    """The loss and the forwards of the model's own classes (not torch's): where a generator the step
    draws from may be named (a module-level ``rng``), for the guard to put its state back."""
    forwards = {type(m).forward: None for _, m in modules if not type(m).__module__.startswith("torch.")}
    return (*([loss] if loss is not None else []), *forwards)


def keyword_arguments(inputs: Any) -> bool:
    """A mapping is keyword arguments: a dict, or a dict-like batch (Hugging Face's ``BatchEncoding``
    is a ``UserDict``, not a dict, and was passed as one positional argument). Not a ``TensorDict``:
    a mapping too, but TensorDict modules take it whole, as one argument."""
    return isinstance(inputs, Mapping) and not type(inputs).__module__.startswith("tensordict")


def positional_arguments(inputs: Any) -> bool:
    """A plain tuple is positional arguments; a named tuple is one argument (an LSTM's
    ``PackedSequence`` is a NamedTuple: unpacked, its four fields reached the model as four)."""
    return type(inputs) is tuple


def _input_tensors(inputs: Any) -> list[tuple[str, torch.Tensor]]:
    """Names for input leaves: ``input``, ``input[1]``, or the keyword (``extra``)."""
    if keyword_arguments(inputs):
        items = [(str(k), v) for k, v in inputs.items()]
    elif positional_arguments(inputs):
        items = [(f"input[{i}]", v) for i, v in enumerate(inputs)]
    else:
        items = [("input", inputs)]
    return [(k, v) for k, v in items if isinstance(v, torch.Tensor)]


def at_the_inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], bool]:
    """A call's arguments with each tensor that came out of another graph (it has a ``grad_fn``: a
    backbone's features, a GAN's fake batch) replaced by a detached leaf of the same values and
    ``requires_grad``, so a run's graph starts at the model's input: its backward never runs the
    user's graph above it (freed by then, or not the model's), and the input's gradient is dL/d input.
    Also whether any was replaced.

    >>> x = torch.ones(2, requires_grad=True) * 2
    >>> (a,), _, cut = at_the_inputs((x,), {})
    >>> a.grad_fn is None and a.requires_grad and cut
    True
    """
    swapped: dict[int, torch.Tensor] = {}

    def leaf(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.grad_fn is not None and not isinstance(v, torch.nn.Parameter):
            if id(v) not in swapped:
                swapped[id(v)] = v.detach().requires_grad_(v.requires_grad)
            return swapped[id(v)]
        return v

    new_args, new_kwargs = tree_map(leaf, (tuple(args), dict(kwargs)))
    return tuple(new_args), dict(new_kwargs), bool(swapped)


def call_inputs(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """The tensors of a call of the model (a live step's), named as a runnable debugger names its
    inputs: ``input`` (the one argument), ``input[1]``, the keyword; one nested deeper ``the inputs``.
    Not parameters (a weight passed in is no batch).

    >>> x, mask = torch.ones(2), torch.zeros(2)
    >>> [name for name, _ in call_inputs((x,), {})], [name for name, _ in call_inputs((x, [x + 1]), {"mask": mask})]
    (['input'], ['input[0]', 'the inputs', 'mask'])
    """
    top = [("input" if len(args) == 1 and not kwargs else f"input[{i}]", v) for i, v in enumerate(args)]
    named: dict[int, str] = {}
    for name, v in [*top, *((str(k), v) for k, v in kwargs.items())]:
        named.setdefault(id(v), name)
    tensors = {id(t): t for t in flatten_tensors((args, kwargs)) if not isinstance(t, torch.nn.Parameter)}
    return [(named.get(i, "the inputs"), t) for i, t in tensors.items()]


def _check_materialized(modules: Sequence[tuple[str, torch.nn.Module]]) -> None:
    """A lazy module (``nn.LazyLinear``) gets its parameters in its first forward: gradsight's run
    would initialize the user's model — with its own random numbers — so it asks for one forward first."""
    lazy = [name or type(m).__name__ for name, m in modules
            if isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()]  # fmt: skip
    if lazy:
        raise ValueError(
            f"the model has lazy modules that are not initialized yet ({', '.join(lazy[:5])}): run one forward "
            "first (model(batch)) so they get their shapes and parameters, then create the debugger — gradsight "
            "does not initialize your model"
        )


def spec_for_function(fn: Callable[[], Any], loss: Any, grad_output: Any, budget: int, source_lines: bool) -> RunSpec:
    deep = DeepUse()

    def scope() -> dict[str, Any]:
        seen = _Seen.of(fn)
        _check_materialized(seen.modules)  # not the deep ones: a path the run may never take (DeepUse)
        deep.watch(seen)
        modules = [*seen.modules, *seen.deep_modules]  # the nearer name first: ModuleTracker keeps it
        tensors = [*seen.tensors, *seen.deep_tensors]
        owned = {id(t) for _, m in modules for t in (*m._parameters.values(), *m._buffers.values())}  # the guard's
        inputs = [(n, t) for n, t in tensors if id(t) not in owned and not isinstance(t, torch.nn.Parameter)]
        return {"modules": modules, "leaf_names": deep.names(), "source_lines": source_lines and not seen.compiled,
                "retaining": [t for _, t in tensors if not t.is_leaf], "reaches": (fn, *reaches_of(modules, loss)),
                "inputs": inputs}  # fmt: skip

    def reached() -> list[int]:  # a global rebound to another model or batch
        found = scope_of(fn)
        return [id(v) for names in (found.near, found.deep) for v in one_level(names).values()]

    def call() -> Any:
        with deep:
            output = fn()
        spec.leaf_names, spec.modules = deep.names(output), deep.modules()  # those of the deep ring it ran
        return output

    spec = RunSpec(call=call, loss=loss, grad_output=grad_output, budget=budget, keep_all_below=options.keep_all_below,
                   **scope())  # fmt: skip
    spec.scope = Rescope(spec, scope, reached, lambda: deep.near_modules)
    return spec


@dataclass
class _Seen:
    """What ``fn`` reaches by name (:func:`.fn_scope.scope_of`): the modules (every submodule, named
    by path) and tensors of its near ring, and their leaves' names; those of its deep ring; whether
    it reaches a compiled module or function (:func:`~.modules.is_compiled`)."""

    modules: list[tuple[str, torch.nn.Module]] = field(default_factory=list)
    names: dict[torch.Tensor, str] = field(default_factory=dict)
    tensors: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    deep_modules: list[tuple[str, torch.nn.Module]] = field(default_factory=list)
    deep_tensors: list[tuple[str, torch.Tensor]] = field(default_factory=list)
    compiled: bool = False

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _Seen:
        reach = scope_of(fn)
        seen = cls()
        for ring, modules, tensors in ((reach.near, seen.modules, seen.tensors),
                                       (reach.deep, seen.deep_modules, seen.deep_tensors)):  # fmt: skip
            for var, value in one_level(ring).items():
                if isinstance(value, torch.nn.Module):
                    modules.extend((f"{var}.{n}" if n else var, m) for n, m in module_names(value))
                    if ring is reach.near:
                        for p, n in leaf_names_from_params(value).items():
                            seen.names.setdefault(p, f"{var}.{n}")  # the first name wins (the nearer)
                else:
                    tensors.append((var, value))
                    if ring is reach.near and value.is_leaf:
                        seen.names.setdefault(value, var)
        values = (fn, *reach.near.values(), *reach.deep.values(), *(m for _, m in (*seen.modules, *seen.deep_modules)))
        seen.compiled = any(is_compiled(v) for v in values)
        return seen


class DeepUse:
    """Which of the modules and tensors a function reaches only deep (``_Seen.deep_*``) its last
    forward used: a module that ran (a global module pre-hook, in while the function runs), a leaf
    found in the graph it made. Only those are named (:meth:`names`): one on a path the run does not
    take (a teacher model behind a flag, an eval head) is no leaf expected to get a gradient, and a
    lazy one is refused only if the forward calls it uninitialized (gradsight does not initialize the
    user's model)."""

    def __init__(self) -> None:
        self.near: dict[torch.Tensor, str] = {}
        self.near_modules: list[tuple[str, torch.nn.Module]] = []
        self._deep: list[tuple[str, torch.nn.Module]] = []
        self._used: set[int] = set()  # ids of the deep modules any forward since watch() ran
        self._modules: dict[int, tuple[str, torch.nn.Module]] = {}  # the first (nearest) name of each
        self._tensors: dict[int, tuple[str, torch.Tensor]] = {}  # leaves that require grad, not the modules'
        self._ran: set[int] = set()
        self._found: set[int] = set()  # ids of the _tensors in the last forward's graph
        self._thread = 0

    def watch(self, seen: _Seen) -> None:
        self.near, self.near_modules, self._deep, self._used = seen.names, seen.modules, seen.deep_modules, set()
        self._modules = {}
        for name, m in seen.deep_modules:
            self._modules.setdefault(id(m), (name, m))
        owned = {id(p) for _, m in seen.deep_modules for p in m._parameters.values()}
        self._tensors = {id(t): (n, t) for n, t in seen.deep_tensors
                         if t.is_leaf and t.requires_grad and id(t) not in owned and t not in self.near}  # fmt: skip

    def __enter__(self) -> DeepUse:
        self._ran, self._thread = set(), threading.get_ident()
        if self._modules:
            SHARED_HOOKS.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        SHARED_HOOKS.discard(self)
        self._used |= self._ran

    def modules(self) -> list[tuple[str, torch.nn.Module]]:
        """The run's modules for the next run: the near ring's and the deep ones a forward ran (one
        that first runs in a later re-run has its nodes' module named from the run after it)."""
        return [*self.near_modules, *((n, m) for n, m in self._deep if id(m) in self._used)]

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        entry = self._modules.get(id(module))
        if entry is None or threading.get_ident() != self._thread:
            return
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            raise ValueError(
                f"the function calls the lazy module {entry[0]}, which is not initialized yet: run one forward "
                "first so it gets its shapes and parameters, then create the debugger — gradsight does not "
                "initialize your model"
            )
        self._ran.add(id(module))

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        return None

    def names(self, output: Any = None) -> dict[torch.Tensor, str]:
        """The leaves' names: the near ring's, then the parameters of the deep modules that ran and
        the deep tensors found in ``output``'s graph (the last forward's when ``output`` is None)."""
        names = dict(self.near)
        for key, (name, m) in self._modules.items():
            if key in self._ran:
                for k, p in m._parameters.items():
                    if p is not None:
                        names.setdefault(p, f"{name}.{k}")
        if output is not None:
            self._found = _leaves_in(output, self._tensors) if self._tensors else set()
        for key in self._found & self._tensors.keys():
            name, t = self._tensors[key]
            names.setdefault(t, name)
        return names


def _leaves_in(output: Any, wanted: Mapping[int, Any]) -> set[int]:
    """The ids among ``wanted`` of the leaves in the graph of ``output``'s tensors (a walk that stops
    once all are found)."""
    found: set[int] = set()
    stack = [t.grad_fn for t in flatten_tensors(output) if t.grad_fn is not None]
    seen = set(stack)
    while stack and len(found) < len(wanted):
        node = stack.pop()
        variable = getattr(node, "variable", None)  # an AccumulateGrad node's leaf
        if variable is not None and id(variable) in wanted:
            found.add(id(variable))
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return found
