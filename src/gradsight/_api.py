"""``gradsight.debugger(...)``: check what the user passed, pick the mode, build the widget."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from .config import as_flag
from .config import options as global_options
from .graph import Graph, RunInfo
from .widget import Debugger

ACCEPTED = (
    "gradsight.debugger() takes a tensor with a grad_fn (e.g. loss), a list/tuple of tensors, an nn.Module "
    "(with inputs= to run it, or alone to follow your own training steps), or a function returning a tensor"
)
WAITING = (
    "Live: waiting for a training step. Run output = model(batch); loss = ...; loss.backward() and this "
    "view follows along (at most one step every {interval:g} s). Training a torch.compile'd wrapper of "
    "the model? Follow that one: gradsight.debugger(compiled_model)."
)

REPLACED = (
    "Replaced: a newer gradsight.debugger() follows this model now (one live view per model), and this "
    "view stopped following its steps. Its steps so far can still be inspected, and a re-run still replays "
    "its last one."
)
# id(model) -> the model and its live debugger, held weakly (one per model: a new one replaces the
# last, whose hooks come off). By id: a model class may define __eq__ and no __hash__ (a dataclass).
_following: dict[int, tuple[weakref.ref[Any], weakref.ref[Debugger]]] = {}


def debugger(
    target: Any,
    *,
    params: Any = None,
    inputs: Any = None,
    loss: Any = None,
    grad_output: Any = None,
    memory_budget: int | None = None,
    source_lines: bool | None = None,
) -> Debugger:
    """A :class:`Debugger` of ``target``.

    - a tensor (or a list/tuple of tensors): its ``grad_fn`` graph; ``params`` (an ``nn.Module`` or a
      name → tensor dict, as torchviz's ``make_dot(params=...)``) names the leaves;
    - ``model, inputs=batch, loss=lambda out: ...``: runs forward and backward, recording the
      gradients through every node (``inputs``: a tensor, a tuple of positional arguments or a dict
      of keyword arguments; without ``loss`` a scalar output is the root, otherwise
      ``torch.ones_like`` each output, or ``grad_output``, is the external gradient; with ``loss``,
      ``grad_output`` is the gradient of what ``loss`` returns, for a loss that is not a scalar);
    - ``fn`` (``fn()`` returns the root tensor): the same, for any code;
    - ``model`` alone: live mode, following your own forward/backward calls until ``dbg.close()``.

    Runs never change your parameters, ``.grad`` fields, buffers, RNG states (torch, Python, NumPy) or
    hooks; what-if re-runs of a ``%%gradsight`` cell put back what the cell changed in the objects it
    reaches (see ``_capture/guard.py`` for the exact list).
    ``memory_budget`` (bytes; default ``gradsight.options.memory_budget``) bounds the tensors kept
    for inspection::

        >>> import torch, gradsight
        >>> model = torch.nn.Linear(3, 1)
        >>> dbg = gradsight.debugger(model, inputs=torch.randn(4, 3), loss=lambda out: out.pow(2).sum())
        >>> sorted(n.leaf.name for n in dbg.graph.leaves)
        ['bias', 'weight']
        >>> model.weight.grad is None   # observed, not perturbed
        True
    """
    import torch

    budget = global_options.budget(memory_budget)
    lines = global_options.source_lines if source_lines is None else as_flag("source_lines", source_lines)
    if isinstance(target, torch.Tensor) or (isinstance(target, (list, tuple)) and target):
        _no_run_arguments(inputs, loss, grad_output, "a tensor")
        return _tensor_debugger(_as_tensors(target, torch), params, budget)
    if isinstance(target, type):
        raise TypeError(_class_given(target, torch))
    if params is not None:
        raise TypeError("params= names the leaves of a tensor's graph; a model or function names its own")
    if isinstance(target, torch.nn.Module):
        if inputs is None:
            _no_run_arguments(inputs, loss, grad_output, "a model in live mode (no inputs=)")
            return _live_debugger(target, budget, lines)
        from ._capture.call_checks import check_loss
        from ._capture.specs import spec_for_model

        _check_inputs(inputs)
        spec = spec_for_model(target, inputs, check_loss(loss), _check_grad_output(grad_output, torch), budget, lines)
        return _runnable(spec, loss)
    if callable(target):
        if inputs is not None:
            raise TypeError("inputs= is for models; a function takes no inputs: call it yourself inside fn")
        from ._capture.call_checks import check_function, check_loss
        from ._capture.specs import spec_for_function

        check_function(target)
        spec = spec_for_function(target, check_loss(loss), _check_grad_output(grad_output, torch), budget, lines)
        spec.what = "the function"
        return _runnable(spec, target, loss)
    raise TypeError(f"{ACCEPTED}; got {type(target).__name__}")


def _tensor_debugger(tensors: list[Any], params: Any, budget: int) -> Debugger:
    import torch

    from ._capture.names import leaf_aliases, leaf_names_from_params, module_names
    from ._capture.records import CaptureOptions
    from ._capture.store import TensorStore
    from ._capture.targets import TensorTarget
    from ._capture.tensors import captured_of

    names = leaf_names_from_params(params)
    store = TensorStore(budget)
    captured = captured_of(tensors, CaptureOptions(leaf_names=names, store=store))
    run = RunInfo(mode="tensor", kept_bytes=store.kept_bytes, budget_bytes=budget, dropped=store.dropped)
    captured.graph = _with_run(captured.graph, run)
    dbg = Debugger()
    tied = leaf_aliases(module_names(params), names) if isinstance(params, torch.nn.Module) else {}
    dbg._start(TensorTarget({name: t for t, name in names.items()}, tied), captured)
    return dbg


def _runnable(spec: Any, *callables: Any) -> Debugger:
    """Run ``spec``; ``callables`` are the user's (``fn``, ``loss=``): a TypeError of its call of one
    is the user's mistake, not gradsight's bug (``tracebacks.users_callables``)."""
    from ._capture.run import run
    from ._capture.targets import RunnableTarget
    from ._capture.tracebacks import users_callables

    users_callables(spec, *callables)

    result = run(spec)
    dbg = Debugger()
    dbg._start(RunnableTarget(spec), result.captured, result.error)
    return dbg


def _live_debugger(model: Any, budget: int, source_lines: bool) -> Debugger:
    from ._capture.live import LiveSession
    from ._capture.modules import is_compiled

    source_lines = source_lines and not any(is_compiled(m) for m in model.modules())  # no recompile
    _replace_live(model)
    dbg = Debugger(Graph(message=WAITING.format(interval=global_options.live_interval), run=RunInfo(mode="live")))
    from ._capture.targets import LiveTarget

    dbg._live = LiveSession(model, dbg._show, budget=budget, interval=global_options.live_interval,
                            source_lines=source_lines, share=global_options.live_share,
                            report=lambda text: setattr(dbg, "error", text),
                            failed=dbg._live_failed)  # fmt: skip
    dbg._target = LiveTarget(dbg._live, model, budget, source_lines)
    for key, (followed, live) in list(_following.items()):  # (forget the models and views gone)
        if followed() is None or live() is None:
            del _following[key]
    _following[id(model)] = (weakref.ref(model), weakref.ref(dbg))
    return dbg


def _replace_live(model: Any) -> None:
    """One live session per model: re-running ``dbg = gs.debugger(model)`` would stack sessions (their
    hooks and costs add up, and the older ones stay on after ``dbg.close()``, unreachable). The last
    live debugger of ``model`` stops following it (hooks off) and says it was replaced; its view, steps
    and ``.grad`` history stay."""
    refs = _following.pop(id(model), None)
    old = refs[1]() if refs is not None and refs[0]() is model else None
    if old is None or old._live is None:
        return
    old._live.close()  # (kept, closed: its .grad history stays inspectable; dbg.close() still drops all)
    old._mark_replaced(REPLACED)  # (for good: a re-run of its last step still works, and says so too)


def _with_run(graph: Graph, run: RunInfo) -> Graph:
    from dataclasses import replace

    return replace(graph, run=run)


def _class_given(cls: type, torch: Any) -> str:
    name = cls.__name__
    if issubclass(cls, torch.nn.Module):
        return (
            f"gradsight.debugger() got the class {name}, not a model: create the model first, "
            f"model = {name}(...), then pass it: gradsight.debugger(model, inputs=batch) to run it, "
            "or gradsight.debugger(model) to follow your own training steps"
        )
    return f"{ACCEPTED}; got the class {name} itself: pass an instance, or a function that returns the loss"


def _check_inputs(inputs: Any) -> None:
    """``inputs`` is a tensor (one argument), a tuple (positional arguments) or a dict (keyword
    arguments); a list is refused rather than guessed: ``model(*batch)`` or ``model(batch)``?"""
    from ._capture.text import with_article

    if isinstance(inputs, Iterator):  # a generator: the first run would use it up, and every re-run fail
        raise TypeError(
            f"inputs= got {with_article(type(inputs).__name__)}, which one run would use up (re-runs would call "
            "the model with nothing): pass a tensor, a tuple of positional arguments or a dict of keyword arguments, "
            "e.g. inputs=tuple(gen)"
        )
    if isinstance(inputs, list):
        raise TypeError(
            "inputs= takes a tensor, a tuple of positional arguments or a dict of keyword arguments, not a "
            "list: pass inputs=tuple(batch) to call model(*batch), or inputs=(batch,) when the model takes "
            "one list argument (inputs=([x],) calls model([x]))"
        )


def _check_grad_output(grad_output: Any, torch: Any) -> Any:
    """``grad_output`` is a tensor, or a tuple/list of tensors (None for a scalar root): one per root."""
    from ._capture.text import with_article

    if grad_output is None or isinstance(grad_output, torch.Tensor):
        return grad_output
    if isinstance(grad_output, (list, tuple)):
        bad = sorted({type(g).__name__ for g in grad_output if g is not None and not isinstance(g, torch.Tensor)})
        if grad_output and not bad:
            return grad_output
        got = (
            f"{with_article(type(grad_output).__name__)} of {', '.join(bad)}"
            if bad
            else f"an empty {type(grad_output).__name__}"
        )
    else:
        got = type(grad_output).__name__
    raise TypeError(
        "grad_output must be a tensor (the gradient of the output, of its shape) or a tuple of them, one per "
        f"output (with loss=, of what loss returns); got {got}"
    )


def _no_run_arguments(inputs: Any, loss: Any, grad_output: Any, what: str) -> None:
    given = [n for n, v in (("inputs", inputs), ("loss", loss), ("grad_output", grad_output)) if v is not None]
    if given:
        raise TypeError(
            f"{', '.join(given)}= only apply when gradsight runs a model or function; for {what} "
            "leave them out (or pass the model: gradsight.debugger(model, inputs=batch, loss=...))"
        )


def _as_tensors(target: Any, torch: Any) -> list[Any]:
    if isinstance(target, torch.Tensor):
        return [target]
    bad = [type(t).__name__ for t in target if not isinstance(t, torch.Tensor)]
    if not bad:
        return list(target)
    raise TypeError(f"{ACCEPTED}; this {type(target).__name__} also holds {', '.join(sorted(set(bad)))}")
