"""Apply what-if toggles for one run, and put everything back afterwards.

``requires_grad`` flips leaves (a module path flips its whole subtree); ``no_grad`` and
``inference_mode`` wrap the whole forward or, through forward pre/post hooks, single modules;
``detach`` detaches a module's output with a forward hook. Every flag is restored and every hook
removed in ``finally``; ``apply`` sets the ``requires_grad`` changes again (:meth:`WhatIf.keep`)
once the run succeeded. A toggled run of a ``torch.compile``'d model runs it eagerly: hooks added after
compiling never reach the compiled code (dynamo does not guard on them), and a flipped requires_grad
or grad mode would compile the user's model again.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import torch

from ..runs import RerunError
from ..toggles import ToggleError, Toggles
from .detach import detach_output
from .guard import unseen
from .names import leaf_names_from_params, module_names


class RefusedToggle(ToggleError, RerunError):  # noqa: N818  (run.py raises it too)
    """A toggle that names something it cannot apply to (an integer tensor to require grad): a
    ToggleError, and a re-run that cannot happen (the debugger stays ready, nothing ran)."""


EAGER_NOTE = (
    "The model is torch.compile'd: this re-run ran it eagerly (torch.compiler.set_stance('force_eager')), so the "
    "toggles reach inside it and your compiled graph is neither changed nor compiled again. Its graph shows the "
    "ops inside the compiled region, which the first run shows as one node; the gradients are the same up to "
    "floating-point rounding."
)


class WhatIf:
    """The toggles of one run, resolved against the run's modules and named leaves. Raises
    :class:`RefusedToggle` for a toggle no tensor could take (requires_grad on integers)."""

    def __init__(
        self, toggles: Toggles, modules: Mapping[str, torch.nn.Module], leaves: Mapping[str, torch.Tensor]
    ) -> None:
        self.toggles = toggles
        self.modules = modules
        self.leaves = leaves
        # leaves by every name toggles may use: another path of a shared parameter (tied weights) too
        self._named = {n: t for n in toggles.requires_grad if (t := self._leaf(n)) is not None}
        self._failed = False  # the run failed: apply keeps nothing
        self._open: list[tuple[int, list[Any]]] = []  # (id(module), contexts) a module toggle entered, innermost last
        self._check()

    def _leaf(self, name: str) -> torch.Tensor | None:
        if name in self.leaves:
            return self.leaves[name]
        if name in self.modules:
            return None
        # another path of a shared parameter: its module's, reached from the nearest module listed
        # (one registered twice is listed under its first path only)
        parts = name.split(".")
        for k in range(len(parts) - 1, -1, -1):
            module: Any = self.modules.get(".".join(parts[:k]))
            if module is not None:
                for part in parts[k:-1]:
                    module = module._modules.get(part) if isinstance(module, torch.nn.Module) else None
                found = module._parameters.get(parts[-1]) if isinstance(module, torch.nn.Module) else None
                return found if isinstance(found, torch.Tensor) else None
        return None

    def _check(self) -> None:
        for name, value in self.toggles.requires_grad.items():
            t = self._named.get(name)
            if value and t is not None and t.is_leaf and not differentiable(t):
                raise RefusedToggle(
                    f"requires_grad: {name} holds {str(t.dtype).removeprefix('torch.')} values, and only "
                    "floating-point or complex tensors can require grad (integer inputs such as token ids never "
                    "get a gradient: toggle what they index, an embedding's weight, instead)"
                )
        if self.eager:
            compiled = [d for d in self.node_detaches() if d.rpartition("/")[2].startswith("CompiledFunction")]
            if compiled:
                raise RefusedToggle(
                    f"detach: {compiled[0]} is a torch.compile'd region, which has no one output to cut; detach a "
                    "module's output instead (detach=['layer1']). A toggled re-run runs the compiled model eagerly, "
                    "so its graph shows the ops inside, whose nodes can then be detached."
                )

    @property
    def eager(self) -> bool:
        """Does this run's forward run compiled code eagerly? Any toggle, once dynamo is loaded
        (nothing is compiled before it is imported; where nothing is compiled, this changes nothing)."""
        return not self.toggles.empty and "torch._dynamo.eval_frame" in sys.modules

    def flips(self) -> list[tuple[torch.Tensor, bool]]:
        """(leaf, new requires_grad) for every leaf the toggles name, modules expanded to their parameters
        (those that can require grad, to True)."""
        out: list[tuple[torch.Tensor, bool]] = []
        # The nearest entry wins (as in why._flipped and the view): outer modules first, leaves last.
        items = self.toggles.requires_grad.items()
        for name, value in sorted(((n, v) for n, v in items if n not in self._named), key=lambda kv: len(kv[0])):
            if name in self.modules:
                out.extend((p, value) for p in self.modules[name].parameters() if not value or differentiable(p))
        out.extend((self._named[n], v) for n, v in items if n in self._named)
        return out

    @contextmanager
    def applied(self) -> Iterator[None]:
        """requires_grad flips and module hooks, for the duration of the run; everything is put back
        on the way out. ``apply``: the caller sets the flips again with :meth:`keep` once the run
        succeeded (a failed run keeps nothing)."""
        before = [(t, t.requires_grad) for t, _ in self.flips()]
        handles: list[Any] = []
        try:
            for t, value in self.flips():
                if t.is_leaf:
                    t.requires_grad_(value)
            handles.extend(self._module_hooks())
            yield
        except BaseException:
            self._failed = True
            raise
        finally:
            for h in handles:
                h.remove()
            self._close_open()
            for t, value in reversed(before):  # reversed: a tensor named twice ends as it began
                if t.is_leaf and t.requires_grad != value:
                    t.requires_grad_(value)

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Whole-step no_grad / inference_mode, around the forward (and the loss) only; compiled code
        runs eagerly (:attr:`eager`). Grad mode is put back on the way out whatever happened: a
        module's no_grad is left by an always_call forward hook, which a KeyboardInterrupt skips."""
        grad_mode = torch.is_grad_enabled()
        try:
            with ExitStack() as stack:
                if self.eager:
                    stack.enter_context(torch.compiler.set_stance("force_eager"))
                if self.toggles.inference_mode is True:
                    stack.enter_context(torch.inference_mode())
                elif self.toggles.no_grad is True:
                    stack.enter_context(torch.no_grad())
                stack.callback(self._close_open)  # inner contexts first: each restores the mode it found
                yield
        except BaseException:
            self._failed = True
            raise
        finally:
            torch.set_grad_enabled(grad_mode)

    def discard(self) -> None:
        """The run failed where :meth:`forward` could not see it (its backward raised, a cell caught
        its error): :meth:`keep` keeps nothing."""
        self._failed = True

    def _module_hooks(self) -> list[Any]:
        handles: list[Any] = []
        kinds: dict[str, list[str]] = {}  # module -> the grad modes it runs under, outer first
        for kind in ("no_grad", "inference_mode"):
            scope = getattr(self.toggles, kind)
            for name in () if isinstance(scope, bool) else scope:
                kinds.setdefault(name, []).append(kind)
        for name, scoped in kinds.items():
            module = self.modules[name]
            handles.append(module.register_forward_pre_hook(_enter(scoped, self._open)))
            handles.append(module.register_forward_hook(_exit(self._open), always_call=True))
        for name in self.toggles.detach:
            if name in self.modules:
                handles.append(self.modules[name].register_forward_hook(partial(detach_output, path=name)))
        return handles

    def _close_open(self) -> None:
        """Leave the contexts module toggles entered and did not leave (their exit hook was skipped)."""
        while self._open:
            for ctx in reversed(self._open.pop()[1]):
                ctx.__exit__(None, None, None)

    def node_detaches(self) -> list[str]:
        """Detach targets that are node ids (not modules)."""
        return [d for d in self.toggles.detach if d not in self.modules]

    def keep(self) -> None:
        """``apply=True``: set the requires_grad flips again, after a guard that restores them —
        not after a failed run."""
        if self._failed:
            return
        for t, value in self.flips():
            if t.is_leaf and t.requires_grad != value:
                t.requires_grad_(value)


def differentiable(t: torch.Tensor) -> bool:
    """Can ``t`` require grad? Floating-point and complex tensors only."""
    return t.is_floating_point() or t.is_complex()


# -- toggles for the objects a %%gradsight cell makes ----------------------------------------------
#
# ``model = nn.Sequential(...)`` in the cell: a re-run makes a new model, so toggles naming
# ``model.0`` must reach that one, not the user's. A statement inserted after each assignment to
# ``model`` (cell.AfterAssign) calls ``BIND``, which applies them to the object just bound.

BIND = "_gradsight_bind"  # a leading underscore: the cell's capture never collects it
DETACH = "_gradsight_detach"  # detach=['x'] on a cell variable: ``x = _gradsight_detach('x', x)`` after each binding
FOLLOW = "_gradsight_follow"  # a why() trace of a tensor the cell makes: follows each one bound to its name


def detach_variable(name: str, value: Any) -> Any:
    """What ``detach=[name]`` does to a cell variable right after the cell binds it (named, so a
    taint trace tells this what-if's detach from the user's own)."""
    return value.detach()


def _under(name: str, key: str) -> bool:
    return key == name or key.startswith(name + ".")


class CellBinds:
    """Called (as ``BIND``) after the cell assigns one of ``names``: applies the toggles under that
    name to the module now bound to it in ``ns`` (the re-run's namespace), for the rest of the
    run. A name bound again (``model = ...`` twice, or ``model.head = nn.Linear(...)``: the user's
    model with a new layer) gets them again; what the plain :class:`WhatIf` toggled already is
    toggled twice, to no effect. ``old`` is the user's namespace. ``follow`` maps parameter paths
    to stand-ins that take the place (and data) of a parameter the re-run made (one that is not
    ``originals[path]``), so a taint trace started from the stand-in follows it."""

    def __init__(self, toggles: Toggles, ns: Mapping[str, Any], old: Mapping[str, Any], names: Collection[str],
                 follow: Mapping[str, torch.nn.Parameter] | None = None,
                 originals: Mapping[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        self.toggles = toggles
        self.ns, self.old, self.names = ns, old, set(names)
        self.follow, self.originals = dict(follow or {}), dict(originals or {})
        self.followed: set[str] = set()  # paths whose stand-in took a parameter's place in this run
        self._bound: dict[str, tuple[Any, set[str], ExitStack]] = {}  # name -> (object, keys resolved, undo)

    def keys(self, name: str) -> list[str]:
        """The toggle keys under ``name`` (``model``, ``model.0``, ``model.0.weight``)."""
        t = self.toggles
        scoped = [s for s in (t.no_grad, t.inference_mode) if not isinstance(s, bool)]
        every = [*t.requires_grad, *(k for s in scoped for k in s), *t.detach]
        return [k for k in dict.fromkeys(every) if _under(name, k)]

    @unseen
    def __call__(self, name: str, value: Any) -> None:
        if name not in self.names or self.ns.get(name) is not value:
            return  # a function's local of the same name, not the cell's variable
        previous = self._bound.pop(name, None)
        if previous is not None:
            previous[2].close()
        if not isinstance(value, torch.nn.Module):
            return
        modules = {f"{name}.{sub}" if sub else name: m for sub, m in module_names(value)}
        leaves = {f"{name}.{p}": t for t, p in leaf_names_from_params(value).items()}
        stack = ExitStack()
        self._bound[name] = (value, {*modules, *leaves}, stack)
        for key, stand_in in self.follow.items():
            param = leaves.get(key)
            made = param is not stand_in and param is not self.originals.get(key)
            if made and isinstance(param, torch.nn.Parameter) and type(param) is torch.nn.Parameter:
                stack.enter_context(_standing_in(value, param, stand_in))
                leaves[key] = stand_in
                self.followed.add(key)
        t = self.toggles

        def scope(s: bool | tuple[str, ...]) -> tuple[str, ...]:
            return () if isinstance(s, bool) else tuple(k for k in s if k in modules)

        mine = Toggles(requires_grad={k: v for k, v in t.requires_grad.items() if k in modules or k in leaves},
                       no_grad=scope(t.no_grad), inference_mode=scope(t.inference_mode),
                       detach=tuple(k for k in t.detach if k in modules))  # fmt: skip
        if not mine.empty:
            stack.enter_context(WhatIf(mine, modules, leaves).applied())

    def __enter__(self) -> CellBinds:
        return self

    @unseen
    def __exit__(self, *exc: object) -> None:
        while self._bound:
            self._bound.popitem()[1][2].close()

    def missed(self) -> list[tuple[str, list[str]]]:
        """(name, toggle keys) that did not reach the module the cell left bound to ``name``; call
        before leaving: the cell bound it some other way (a for loop, ``globals()``), or the
        module it made has no such path."""
        out: list[tuple[str, list[str]]] = []
        for name in sorted(self.names):
            final = self.ns.get(name)
            if final is self.old.get(name) or not isinstance(final, torch.nn.Module):
                continue
            bound = self._bound.get(name)
            found = bound[1] if bound is not None and bound[0] is final else set()
            keys = [k for k in self.keys(name) if k not in found]
            if keys:
                out.append((name, keys))
        return out


@contextmanager
def _standing_in(root: torch.nn.Module, param: torch.nn.Parameter, stand_in: torch.nn.Parameter) -> Iterator[None]:
    """``stand_in`` in ``param``'s place in every module of ``root`` (its data and flags too)."""
    places = [(m, k) for m in root.modules() for k, p in m._parameters.items() if p is param]
    stand_in.data = param.data
    stand_in.requires_grad_(param.requires_grad)
    for m, k in places:
        m._parameters[k] = stand_in
    try:
        yield
    finally:
        for m, k in places:
            if m._parameters.get(k) is stand_in:
                m._parameters[k] = param


def _enter(kinds: list[str], entered: list[tuple[int, list[Any]]]) -> Any:
    """The pre-hook of a module run under no_grad and / or inference_mode: enters them in order."""

    def hook(module: torch.nn.Module, args: Any) -> None:
        contexts: list[Any] = []
        entered.append((id(module), contexts))
        for kind in kinds:
            ctx = torch.inference_mode() if kind == "inference_mode" else torch.no_grad()
            ctx.__enter__()
            contexts.append(ctx)

    return hook


def _exit(entered: list[tuple[int, list[Any]]]) -> Any:
    """Its always_call forward hook: leaves what the module's own (innermost) call entered, in reverse."""

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        for k in range(len(entered) - 1, -1, -1):
            if entered[k][0] == id(module):
                contexts = entered.pop(k)[1]
                for ctx in reversed(contexts):
                    ctx.__exit__(None, None, None)
                return

    return hook
