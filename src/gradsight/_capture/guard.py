"""Undo what a forward gradsight runs itself does to the user's modules and random state.

A runnable debugger, a what-if re-run or a taint trace runs the user's forward for real, and a
forward in training mode changes things: BatchNorm's running statistics, spectral norm's power
iteration vectors, a buffer a model reassigns (``self.avg = 0.9 * self.avg + ...``), the rows
``nn.Embedding(max_norm=...)`` renormalizes in its weight, and the Python and NumPy random
generators a model may draw from. :class:`ModuleGuard` snapshots the buffers (and those weights)
of every module the forward calls — the modules gradsight knows by name at once, any other one in
the global forward pre-hook, before its first call — and puts every value and every buffer object
back afterwards (in runnable runs also the requires_grad and training flags a forward changes, and
the generators the step reaches by name, :func:`generators_reached`); :class:`InputGuard` tells
which inputs a forward edits in place; ``namespace_guard.NamespaceGuard`` does the same for what a
``%%gradsight`` cell re-run reaches. :func:`fork_rng` gives every such run its own copy of torch's,
Python's and NumPy's generators (and marks it as gradsight's own run, :func:`own_run`);
``no_train.no_backward`` stops a forward that would run backward and an optimizer step itself.
"""

from __future__ import annotations

import functools
import random
import sys
import threading
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from .modules import SHARED_HOOKS

_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)


def unseen(fn: Any) -> Any:
    """Run ``fn`` out of sight of torch-function modes: a taint trace (why.py) runs the forward under
    one, and the guards' reads (``t.grad``, ``t.requires_grad``), copies and detaches are not the
    user's code — seen, they looked like a use of the leaf, or a break in its path."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch._C.DisableTorchFunction():
            return fn(*args, **kwargs)

    return wrapper


class ModuleGuard:
    """``with ModuleGuard(modules):`` — every buffer of every module the block's forwards call, and
    any weight a forward renormalizes in place, is as before when the block ends.

    ``flags=True`` (runnable runs): the parameters' ``requires_grad`` and the modules' ``training``
    flags too (a forward that freezes a layer or calls ``self.head.eval()``); a ``%%gradsight`` cell's
    re-run leaves them to ``namespace_guard.NamespaceGuard``, which sees them before the cell changes them.
    ``generators``: torch and NumPy generators held outside the model that the forward may draw from
    (:func:`generators_reached`), whose states go back too."""

    def __init__(self, modules: Any = (), *, flags: bool = False, generators: Iterable[Any] = ()) -> None:
        self._seen: set[int] = set()
        self._alive: list[torch.nn.Module] = []  # keeps id()s unique while the guard lives
        self._buffers: list[tuple[torch.nn.Module, str, torch.Tensor, torch.Tensor, int | None]] = []
        self._weights: list[tuple[torch.Tensor, torch.Tensor, int]] = []
        self._generators: list[tuple[Any, Any]] = []  # a module's own generator (noise layers) and its state
        self._versions: list[tuple[torch.Tensor, int]] = []  # parameters' version counters when first seen
        self._flags = flags
        self._training: list[tuple[torch.nn.Module, bool]] = []
        self._requires_grad: list[tuple[torch.Tensor, bool]] = []
        self.generator_types = generator_types()
        self._thread = threading.get_ident()
        for generator in generators:
            self._generators.append((generator, generator_state(generator)))
        for _, module in modules:
            self._snapshot(module)

    def __enter__(self) -> ModuleGuard:
        self._thread = threading.get_ident()
        SHARED_HOOKS.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        SHARED_HOOKS.discard(self)
        self.restore()

    def _pre(self, module: torch.nn.Module, args: Any) -> None:
        # Only this run's own forward (its thread): a model another thread trains meanwhile is the
        # user's business. (SHARED_HOOKS calls no tracker while dynamo traces.)
        if id(module) not in self._seen and threading.get_ident() == self._thread:
            self._snapshot(module)

    def _post(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        pass

    def parameters(self) -> list[torch.Tensor]:
        """The parameters of every module seen so far."""
        return [p for m in self._alive for p in m.parameters(recurse=False)]

    def edited(self) -> list[torch.Tensor]:
        """Parameters edited in place since their module was first seen (a constraint a forward
        applies, ``weight.clamp_()`` under ``no_grad``): no run can undo that without a copy of every
        parameter, so the run says so (run.py)."""
        return list({id(p): p for p, version in self._versions if p._version != version}.values())

    @unseen
    def _snapshot(self, module: torch.nn.Module) -> None:
        if id(module) in self._seen:
            return
        self._seen.add(id(module))
        self._alive.append(module)
        for name, b in module._buffers.items():
            if b is not None and not isinstance(b, UninitializedBuffer):
                self._buffers.append((module, name, b, detached_copy(b), version_of(b)))
        renormed = None
        if isinstance(module, _EMBEDDINGS) and module.max_norm is not None:
            w = renormed = module.weight  # renormalized in place, under no_grad, by every forward
            self._weights.append((w, detached_copy(w), w._version))
        every = [p for p in module._parameters.values() if p is not None]
        params = every if renormed is None else [p for p in every if p is not renormed]
        self._versions += [(p, p._version) for p in params]
        if self._flags:
            self._training.append((module, module.training))
            self._requires_grad += [(p, p.requires_grad) for p in every]
        generators = self.generator_types
        for value in vars(module).values():
            if type(value) in generators:  # not isinstance: 10x slower with NumPy's classes (1 µs a module)
                self._generators.append((value, generator_state(value)))

    @unseen
    def restore(self) -> None:
        # Through .data: putting the values back moves no version counter, and the counter the
        # forward's own in-place update moved (BatchNorm's num_batches_tracked += 1, an EMA buffer's
        # mul_) goes back with them, so a graph the user built before this run that saved the
        # buffer still backwards. Latest snapshot first, so a buffer two modules share ends with the
        # first, untouched one.
        with torch.no_grad():
            for module, name, b, copy, _ in reversed(self._buffers):
                if module._buffers.get(name) is not b:  # reassigned by the forward: put the object back
                    module._buffers[name] = b
                put_back(b, copy)
            for w, copy, version in self._weights:
                if w._version != version:
                    put_back(w, copy)
        set_versions([(b, version) for _, _, b, _, version in reversed(self._buffers)])
        set_versions((w, version) for w, _, version in self._weights)
        for generator, state in self._generators:
            set_generator_state(generator, state)
        # Latest first, as buffers: a parameter two modules share ends with its first-seen flag.
        for p, requires_grad in reversed(self._requires_grad):
            if p.requires_grad != requires_grad and p.is_leaf:
                p.requires_grad_(requires_grad)
        for module, training in self._training:
            if module.training != training:
                module.training = training  # the flag itself: train()/eval() would recurse into children


class InputGuard:
    """``with InputGuard(inputs, edited):`` around a forward — which of ``inputs`` (name, tensor) it
    edited in place (``x /= 2``: the version counter moved) is in ``changed`` afterwards, and their
    ids go into ``edited``. Those an earlier run saw edited (already in ``edited``) are copied first
    and put back afterwards (``restored``), so re-runs do not compound the edit. Others are not
    copied: a copy of the batch before every run would double its memory for a rare forward. Their
    ``requires_grad`` goes back too (a saliency forward's ``x.requires_grad_()``)."""

    @unseen
    def __init__(self, inputs: Iterable[tuple[str, torch.Tensor]], edited: dict[int, torch.Tensor]) -> None:
        self._edited = edited
        self._versions: list[tuple[str, torch.Tensor, int]] = []
        self._copies: list[tuple[torch.Tensor, torch.Tensor, int | None]] = []
        self._flags = [(t, t.requires_grad) for _, t in inputs if t.is_leaf]
        self.changed: list[str] = []
        for name, t in inputs:
            version = version_of(t)
            if version is None:
                continue
            self._versions.append((name, t, version))
            if edited.get(id(t)) is t:
                self._copies.append((t, detached_copy(t), version))
        self.restored = bool(self._copies)

    def __enter__(self) -> InputGuard:
        return self

    @unseen
    def __exit__(self, *exc: object) -> None:
        for name, t, version in self._versions:
            if t._version != version:
                self.changed.append(name)
                self._edited[id(t)] = t  # held: the id stays this tensor's
        with torch.no_grad():
            for t, copy, _ in self._copies:
                put_back(t, copy)
        set_versions((t, version) for t, _, version in self._copies)  # as the values: as before this run
        for t, requires_grad in reversed(self._flags):  # reversed: a tensor given twice ends as it began
            if t.requires_grad != requires_grad:
                t.requires_grad_(requires_grad)


def version_of(t: torch.Tensor) -> int | None:
    """``t``'s version counter; None for a tensor without one (an inference tensor)."""
    if isinstance(t, (UninitializedParameter, UninitializedBuffer)):  # a lazy module's: is_inference() raises
        return t._version
    try:
        return None if t.is_inference() else t._version
    except Exception:  # a tensor subclass without one
        return None


# torch's own guard for this (torch.autograd.graph._unsafe_preserve_version_counter) uses it; private,
# so looked up once and never trusted to be there.
_SET_VERSION_COUNTER = getattr(getattr(torch._C, "_autograd", None), "_unsafe_set_version_counter", None)


def set_versions(tensors: Iterable[tuple[torch.Tensor, int | None]]) -> None:
    """Each tensor's version counter back to ``version``, once its values are back as they were then:
    autograd checks the counter of every value a graph saved, and a graph the user built before
    gradsight's run (or re-run) would otherwise fail its backward ("modified by an inplace
    operation") though the values are the ones it saved. A view shares its base's counter. Without
    the (private) torch function, or where it refuses a tensor, the counter stays moved. Never raises."""
    todo = [(t, v) for t, v in tensors if v is not None and version_of(t) not in (None, v)]
    setter = _SET_VERSION_COUNTER
    if setter is None or not todo:
        return
    for t, version in todo:  # the latest pair for a tensor given twice wins, as for the values
        try:
            setter((t,), (version,))
        except Exception:  # a tensor subclass, an inference tensor: its counter stays
            continue


_FUNCTIONS = (types.FunctionType, types.MethodType)


def generators_reached(functions: Iterable[Any]) -> list[Any]:
    """The torch and NumPy generators ``functions`` reach by name, for :class:`ModuleGuard` to put back:
    their closures' values, the globals their code (and the code nested in it: a lambda, a comprehension)
    names, the same one level into the functions among those, and a bound method's object's attributes
    (``self.rng``). One held only inside another object (``aug.rng``, a list) is not found. Never raises."""
    kinds = generator_types()
    found: dict[int, Any] = {}
    todo = [(fn, True) for fn in functions if fn is not None]
    seen: set[int] = set()
    while todo:
        fn, deeper = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        try:
            values = _values_named_by(fn)
        except Exception:  # an object that does not read like a function: nothing found in it
            continue
        for value in values:  # type(), not isinstance(), which reads __class__ (a property that raises, a lazy proxy)
            kind = type(value)
            if kind in kinds:
                found[id(value)] = value
            elif deeper and kind in _FUNCTIONS:
                todo.append((value, False))
    return list(found.values())


def _values_named_by(fn: Any) -> list[Any]:
    out: list[Any] = []
    owner = getattr(fn, "__self__", None)
    if isinstance(fn, types.MethodType) and not isinstance(owner, type):
        out.extend(getattr(owner, "__dict__", {}).values())
    fn = getattr(fn, "__func__", fn)
    if not isinstance(fn, types.FunctionType):
        return out
    globs = fn.__globals__
    out.extend(globs[name] for name in global_names(fn.__code__) if name in globs)
    for cell in fn.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            continue
    return out


@functools.lru_cache(maxsize=1024)  # code objects never change; every run reads the names again
def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names ``code`` and the code objects nested in it (a lambda, a comprehension, a nested
    ``def``) look up, in order, once each: its globals, and attribute names (a superset).

    >>> global_names(compile("f = lambda: model(x)", "<cell>", "exec"))
    ('f', 'model', 'x')
    """
    names: dict[str, None] = {}
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(dict.fromkeys(c.co_names))
        stack.extend(k for k in reversed(c.co_consts) if isinstance(k, types.CodeType))
    return tuple(names)


def generator_types() -> frozenset[type]:
    """torch's generators, and NumPy's (if imported) that a module may keep for its noise."""
    np = sys.modules.get("numpy")
    if np is None:
        return frozenset({torch.Generator})
    return frozenset({torch.Generator, np.random.Generator, np.random.RandomState})


def generator_state(generator: Any) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    if hasattr(generator, "bit_generator"):  # numpy.random.Generator
        return generator.bit_generator.state
    return generator.get_state()  # numpy.random.RandomState


def set_generator_state(generator: Any, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    elif hasattr(generator, "bit_generator"):
        generator.bit_generator.state = state
    else:
        generator.set_state(state)


def detached_copy(t: torch.Tensor) -> torch.Tensor:
    """A snapshot, out of sight of torch-function modes: a taint trace (why.py) runs the forward
    under one and would take this detach for a break in the user's path."""
    with torch._C.DisableTorchFunction():
        return t.detach().clone()


def put_back(t: torch.Tensor, copy: torch.Tensor) -> None:
    """``t``'s values (and shape, if the forward resized it through ``.data``) back to ``copy``."""
    with torch._C.DisableTorchFunction():
        if t.shape == copy.shape and t.dtype == copy.dtype:
            t.data.copy_(copy)
        else:
            t.data = copy


def python_rng_state() -> tuple[Any, Any]:
    """The state of ``random`` and (if imported) ``numpy.random``'s global generator."""
    np = sys.modules.get("numpy")
    return random.getstate(), None if np is None else np.random.get_state()


def set_python_rng_state(state: tuple[Any, Any]) -> None:
    py, npy = state
    random.setstate(py)
    np = sys.modules.get("numpy")
    if np is not None and npy is not None:
        np.random.set_state(npy)


# -- the run's own RNG, and no training inside it ------------------------------------------------


@contextmanager
def fork_rng(spec: Any) -> Iterator[None]:
    """The run gets its own copy of the RNGs — torch's, Python's ``random`` and NumPy's global one
    (the user's are restored afterwards); later runs replay the first run's states (``spec.rng``),
    so they see the same random numbers (dropout masks) and stay comparable. Every forward gradsight
    runs itself goes through here: live sessions ignore forwards while one is open (:func:`own_run`)."""
    devices = cuda_devices()
    python = python_rng_state()
    _OWN_RUNS.depth = own = getattr(_OWN_RUNS, "depth", 0) + 1
    try:
        with torch.random.fork_rng(devices=devices):
            if spec.rng is None:
                spec.rng = rng_state()
            else:
                torch.set_rng_state(spec.rng[0])
                for d, state in zip(devices, spec.rng[1], strict=False):
                    torch.cuda.set_rng_state(state, d)
                set_python_rng_state(spec.rng[2])
            yield
    finally:
        _OWN_RUNS.depth = own - 1
        set_python_rng_state(python)


_OWN_RUNS = threading.local()  # .depth: forwards gradsight runs itself in this thread (a trace nests in a re-run)


def own_run() -> bool:
    """Is gradsight running a forward of its own (a runnable run, a re-run, a trace) in this thread?
    Per thread: a user's training thread keeps being followed meanwhile."""
    return getattr(_OWN_RUNS, "depth", 0) > 0


def cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []  # type: ignore[no-untyped-call]


def rng_state() -> tuple[torch.Tensor, list[torch.Tensor], tuple[Any, Any]]:
    """The RNG states now (torch's CPU and initialized CUDA generators, Python's and NumPy's), to
    replay later with ``fork_rng``."""
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda_devices()], python_rng_state()
