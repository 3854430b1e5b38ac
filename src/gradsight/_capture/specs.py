"""What a runnable debugger runs: a :class:`~.run.RunSpec` from a model and its inputs, or from a
function, with the names of the modules and tensors it can reach (to name nodes and leaves; brought
up to date before each run when the model changed since, :class:`Rescope`), and the checks that
keep a run from changing the user's model (lazy modules must be initialized first).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.utils._pytree import tree_leaves

from ..config import options
from .modules import is_compiled
from .names import leaf_names_from_params, module_names
from .namespace_guard import one_level_in
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
    compares the ids of every module's parameters and children (and of what the function reaches by
    name, ``roots``) with the last ones: about 0.2 ms for 1,000 parameters; only a change rebuilds
    them (``build``, 1 ms)."""

    def __init__(self, spec: RunSpec, build: Callable[[], dict[str, Any]],
                 roots: Callable[[], list[int]] = list) -> None:  # fmt: skip
        self._build, self._roots = build, roots
        self._key = self._key_of(spec)

    def _key_of(self, spec: RunSpec) -> list[int]:
        return [*self._roots(), *(id(v) for _, m in spec.modules for d in (m._parameters, m._modules)
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
    def scope() -> dict[str, Any]:
        modules, names, tensors, compiled = _modules_seen_by(fn)
        _check_materialized(modules)
        owned = {id(t) for _, m in modules for t in (*m._parameters.values(), *m._buffers.values())}  # the guard's
        inputs = [(n, t) for n, t in tensors if id(t) not in owned and not isinstance(t, torch.nn.Parameter)]
        return {"modules": modules, "leaf_names": names, "source_lines": source_lines and not compiled,
                "retaining": [t for _, t in tensors if not t.is_leaf], "reaches": (fn, *reaches_of(modules, loss)),
                "inputs": inputs}  # fmt: skip

    def reached() -> list[int]:  # a global rebound to another model or batch
        return [id(v) for v in _one_level_in(_scope_of(fn)).values() if isinstance(v, (torch.nn.Module, torch.Tensor))]

    spec = RunSpec(call=fn, loss=loss, grad_output=grad_output, budget=budget, keep_all_below=options.keep_all_below,
                   **scope())  # fmt: skip
    spec.scope = Rescope(spec, scope, reached)
    return spec


def _modules_seen_by(
    fn: Callable[..., Any],
) -> tuple[list[tuple[str, torch.nn.Module]], dict[torch.Tensor, str], list[tuple[str, torch.Tensor]], bool]:
    """Modules and tensors ``fn`` can reach by name (:func:`_scope_of`), to name nodes; the tensors
    among them, by name (its inputs; the non-leaf ones are ``RunSpec.retaining``); and whether it
    reaches a compiled module or function (:func:`_compiled`)."""
    scope = _scope_of(fn)
    modules: list[tuple[str, torch.nn.Module]] = []
    names: dict[torch.Tensor, str] = {}
    tensors: list[tuple[str, torch.Tensor]] = []
    for var, value in _one_level_in(scope).items():
        if isinstance(value, torch.nn.Module):
            modules.extend((f"{var}.{n}" if n else var, m) for n, m in module_names(value))
            names.update({p: f"{var}.{n}" for p, n in leaf_names_from_params(value).items()})
        elif isinstance(value, torch.Tensor):
            tensors.append((var, value))
            if value.is_leaf:
                names.setdefault(value, var)
    compiled = any(is_compiled(v) for v in (fn, *scope.values(), *(m for _, m in modules)))
    return modules, names, tensors, compiled


SCOPE_DEPTH = 4  # calls deep: fn → step → block → layer's helper
SCOPE_FUNCTIONS = 64  # functions read at most (each run re-reads them, to see a global rebound)


def _scope_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """What ``fn`` reaches by name: its globals and closure, the same of the functions among them
    and of theirs (``SCOPE_DEPTH`` calls deep, ``SCOPE_FUNCTIONS`` functions at most, the nearer name
    first: fn → g → blk, where ``blk`` uses ``lin1``), and for a bound method its object's
    attributes (``self.model``). Not torch's own functions (``from torch.nn.functional import
    mse_loss``): none of the user's modules is named in them."""
    scope: dict[str, Any] = {}
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):
        code = getattr(getattr(fn, "__func__", None), "__code__", None)
        me = code.co_varnames[0] if code is not None and code.co_argcount else "self"
        if isinstance(owner, torch.nn.Module):
            scope[me] = owner
        else:
            scope.update({f"{me}.{k}": v for k, v in getattr(owner, "__dict__", {}).items()})
    seen = {id(fn)}
    level = [fn]
    for _ in range(SCOPE_DEPTH):
        called: list[Callable[..., Any]] = []
        for f in level:
            for name, v in _names_of(f).items():
                scope.setdefault(name, v)
                if _followed(v) and id(v) not in seen and len(seen) < SCOPE_FUNCTIONS:
                    seen.add(id(v))
                    called.append(v)
        level = called
    return scope


def _followed(v: Any) -> bool:
    """A function of the user's to read the names of: not torch's (or gradsight's)."""
    module = getattr(v, "__module__", None) or ""
    return isinstance(v, types.FunctionType) and not module.startswith(("torch.", "gradsight.")) and module != "torch"


def _names_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The globals ``fn``'s code names (also in its nested code: a comprehension's, a lambda's) and
    its closure's values."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return {}
    globs = getattr(fn, "__globals__", {})
    out = {n: globs[n] for n in _global_names(code) if n in globs}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False):
        try:
            out[name] = cell.cell_contents
        except ValueError:
            continue
    return out


def _global_names(code: types.CodeType) -> list[str]:
    """``co_names`` of ``code`` and of the code objects nested in it, in order, once each."""
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(dict.fromkeys(c.co_names))
        stack.extend(k for k in reversed(c.co_consts) if isinstance(k, types.CodeType))
    return list(names)


_NOT_CONTAINERS = (torch.nn.Module, torch.Tensor, str, bytes, type, types.ModuleType, types.FunctionType,
                   types.BuiltinFunctionType, types.MethodType)  # fmt: skip


def _one_level_in(scope: dict[str, Any]) -> dict[str, Any]:
    """``scope`` plus the modules and tensors one level inside its values: ``models["enc"]``,
    ``layers[0]``, ``trainer.model`` (a function that reaches its model through a dict or an object)."""
    out = dict(scope)
    for var, value in scope.items():
        if isinstance(value, _NOT_CONTAINERS):
            continue
        for name, v in one_level_in(var, value):
            if isinstance(v, (torch.nn.Module, torch.Tensor)):
                out.setdefault(name, v)
    return out
