"""Catch saved values just before a backward frees them, and the gradients it computes (used
while a %%gradsight cell runs).

Cells often call ``loss.backward()`` themselves, which frees every saved tensor (autograd-facts
§2.4). While the cell runs, ``torch.autograd.backward`` and ``torch.autograd.grad`` (which
``Tensor.backward`` calls) are wrapped: before the real call, the graph below the backward's
roots is walked and its saved values read — the tensors themselves are kept for lazy statistics,
within the memory budget — and every node is hooked for the call by a runnable run's
``GradRecorder`` (``spy_watch.Watch``), recording the gradients that flow into it (shape and norm)
and, while the graph's gradients fit ``options.keep_all_below``, the tensors: those flowing into it
(not the one reaching an ``AccumulateGrad``: holding it would force a copy of the parameter's
gradient) and those it produced (its ``grad_out``, with their norms). Only backward calls made on
the cell's own thread are recorded (a thread training beside the cell is none of its graph), and
only a few of them are remembered, so a training loop in a cell does not pile up every step's
activations: the last ``KEEP_CALLS``, and up to
``KEEP_HELD`` older ones whose graph a tensor the cell bound still reaches (``loss.backward()``
followed by backward calls on scratch tensors still shows the loss's). The wrappers and hooks are
removed when the call or the cell ends, also on error, and an error in gradsight's own code never
reaches the user's backward. A wrapper the cell bound to a name (``from torch.autograd import grad``
inside the cell) outlives it: from the cell's end it only calls the original, holding nothing of
the spy. A warning raised inside a backward call names the frame it would name without gradsight's
frames on the stack (``spy_warnings``): torch's "Full backward hook is firing…" names the user's
``loss.backward()`` line, not the wrapper's — also in a call the spy does not watch (another
thread's, which passes through the wrapper while the cell runs).

The graph shows the gradient of the last call through each leaf, but ``.grad`` adds up every
``backward`` that reached it. So the spy also follows each leaf's ``.grad`` across the cell's
backward calls (:class:`Accumulation`): how many added to it since it was last None or changed by
something else (``zero_grad``, ``w.grad = None``, clipping), and what it held before the first.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from ..graph import TensorSummary
from . import saved as saved_mod
from .cell_grads import Grads
from .guard import version_of
from .hooks import ACCUMULATE_GRAD, GradMeta, grad_meta
from .records import Observed, Presaved
from .spy_warnings import Rehomed
from .spy_watch import Call as _Call
from .spy_watch import Watch as _Watch
from .summary import summarize
from .walk import short_name, walk

V = TypeVar("V")
KEEP_CALLS = 4  # the latest backward calls remembered (the graph shown is normally the last one's)
KEEP_HELD = 4  # and older ones still reached from a tensor the cell bound (its loss, before scratch backward calls)
_CTX_SAVED = "saved_tensors"  # a custom Function's saved tensors (saved.read_saved: "saved_tensors[i]")


class BackwardSpy:
    """``presaved[node]``: what ``node`` had saved just before a backward freed it.

    ``held``: the nodes the cell's tensors have now (the ``grad_fn`` of each tensor bound to a name):
    a call older than the last ``KEEP_CALLS`` is kept while one of them is in its graph.
    ``grads``: told the leaves each backward call reaches before it adds to their ``.grad``
    (``cell_grads``: what a first run's ``.grad`` held, and a re-run's own ``.grad``)."""

    def __init__(self, budget_bytes: int, held: Callable[[], Iterable[Any]] | None = None,
                 grads: Grads | None = None, nodes: Callable[[list[Any]], None] | None = None) -> None:  # fmt: skip
        self.errors: list[str] = []
        self._grads = grads
        self._nodes = nodes  # told each call's nodes before it runs (cell_hidden: its checkpoint regions)
        self._budget = budget_bytes
        self._held = held
        self._calls: list[_Call] = []  # in the order the calls started
        self._accumulations: dict[int, Accumulation] = {}  # id(leaf) ->
        self._thread = threading.get_ident()  # the cell's: backward calls of other threads are not its
        self._inside = False  # in a watched call (on the cell's thread): a call it makes is part of it
        # the wrappers installed, each with what it wraps: a cell that bound one to a name gets the original back
        self.wrappers: dict[Callable[..., Any], Callable[..., Any]] = {}

    @property
    def presaved(self) -> dict[Any, Presaved]:
        """``presaved[node]``: what ``node`` had saved just before the last backward through it."""
        return _merged(call.presaved for call in self._calls)

    @property
    def observed(self) -> dict[Any, Observed]:
        """``observed[node]``: the gradients that flowed into ``node`` in the last backward through it."""
        return _merged(call.observed for call in self._calls if call.observed is not None)

    @property
    def produced(self) -> dict[Any, Observed]:
        """``produced[node]``: the gradients ``node`` produced (its ``grad_out``) in the last backward
        through it — absent where that call's gradients were past ``options.keep_all_below``, even if an
        older call kept them (a node's ``grad_out`` is from the call its ``grad_in`` is from)."""
        merged: dict[Any, Observed] = {}
        for call in self._calls:
            for node in call.observed or {}:
                seen = (call.produced or {}).get(node)
                if seen is None:
                    merged.pop(node, None)
                else:
                    merged[node] = seen
        return merged

    @property
    def roots(self) -> list[tuple[Any, ...]]:
        """The nodes each remembered call started from, oldest call first (held by ``presaved`` anyway)."""
        return [call.roots for call in self._calls]

    def accumulated(self) -> list[tuple[torch.Tensor, Accumulation]]:
        """Leaves whose ``.grad`` holds more than the last backward call's gradient: two or more of the
        cell's backward calls added to it, or one added to what it already held — and nothing changed
        it since."""
        out = []
        for acc in list(self._accumulations.values()):
            leaf = acc.leaf()
            if leaf is not None and acc.calls and acc.unchanged(leaf.grad) and (acc.calls > 1 or acc.held()):
                out.append((leaf, acc))
        return out

    @contextmanager
    def installed(self) -> Iterator[BackwardSpy]:
        autograd = torch.autograd
        original_backward, original_grad = autograd.backward, autograd.grad
        self._thread = threading.get_ident()
        live: list[BackwardSpy] = [self]  # emptied when the cell ends: a wrapper left bound passes through
        autograd.backward = _wrap(original_backward, "tensors", live)
        autograd.grad = _wrap(original_grad, "outputs", live)
        self.wrappers = {autograd.backward: original_backward, autograd.grad: original_grad}
        try:
            with Rehomed(__name__, __file__):  # other threads' calls pass the wrapper unwatched: their warnings too
                yield self
        finally:
            live.clear()
            autograd.backward, autograd.grad = original_backward, original_grad

    def _call(self, fn: Callable[..., Any], first: str, args: Any, kwargs: Any) -> Any:
        """One backward call of the cell's thread, watched. A call made inside it is not another:
        ``torch.autograd.backward(loss)`` hands itself back to the cell's torch-function mode, which
        calls the module's ``backward`` — this wrapper — again (recorded twice, it read as .grad
        accumulated over two calls)."""
        __tracebackhide__ = True
        if self._inside:
            return fn(*args, **kwargs)
        self._inside = True
        watch = None
        try:  # a KeyboardInterrupt anywhere in here still takes the hooks off (_finish)
            roots = args[0] if args else kwargs.get(first)
            watch = self.record(roots, accumulates=first == "tensors")
            if watch is None and first == "tensors" and self._grads is not None:
                self._keep_grads(roots)  # the saved values could not be read: the .grad still can
            with Rehomed(__name__, __file__):  # a warning inside names what it would without our frames
                result = fn(*args, **kwargs)
            if watch is not None and first == "outputs":  # autograd.grad: leaves get what it returns
                watch.received(args[1] if len(args) > 1 else kwargs.get("inputs"), result)
            return result
        finally:
            self._inside = False
            if watch is not None:
                self._finish(watch)

    def record(self, roots: object, *, accumulates: bool = False) -> _Watch | None:
        """Read the saved values below ``roots`` and hook their nodes for this call; never raises (but
        for a KeyboardInterrupt, after taking its hooks off).
        ``accumulates``: a ``backward`` (not ``autograd.grad``), adding to the leaves' ``.grad``."""
        watch: _Watch | None = None
        try:
            items = roots if isinstance(roots, (list, tuple)) else [roots]
            nodes = [n for n in (_node_of(t) for t in items) if n is not None]
            order, _, _ = walk(nodes)
            call: dict[Any, Presaved] = {}
            budget = [self._budget]
            for node in order:
                tensors: dict[str, torch.Tensor] = {}
                values = saved_mod.read_saved(node, _keeper(tensors, budget))
                if saved_mod.is_python_function(node) and not any(k.startswith(_CTX_SAVED) for k in values):
                    # a ctx that saved no tensors (a module's full backward hook): after backward, reading
                    # them says "freed" — there was nothing to free
                    values[_CTX_SAVED] = ()
                call[node] = Presaved(values, tensors, {path: t._version for path, t in tensors.items()})
                if short_name(node) == ACCUMULATE_GRAD:  # its leaf's version: an optimizer step after shows
                    call[node].leaf_version = version_of(node.variable)
            watch = _Watch(order, self.errors, self._budget - budget[0])  # the saved tensors kept count
            watch.accumulates = accumulates
            watch.call = _Call(call, roots=tuple(dict.fromkeys(nodes)))
            self._calls.append(watch.call)
            self._trim()
            if self._nodes is not None:
                self._nodes(order)
            if accumulates:
                self._before_backward(watch)
        except Exception as e:  # gradsight's hooks never raise into the user's backward
            self.errors.append(f"could not read saved values before backward: {type(e).__name__}: {e}")
            if watch is not None:
                watch.close()
            return None
        except BaseException:  # interrupted: no hook outlives the call
            if watch is not None:
                watch.close()
            raise
        return watch

    def _trim(self) -> None:
        """Forget the calls before the last ``KEEP_CALLS``, but for the last ``KEEP_HELD`` of them whose
        graph holds a node of a tensor the cell bound (its ``loss``, before backward calls on scratch
        tensors): a bounded few, whatever the cell runs."""
        if len(self._calls) <= KEEP_CALLS:
            return
        older, recent = self._calls[:-KEEP_CALLS], self._calls[-KEEP_CALLS:]
        kept: list[_Call] = []
        if self._held is not None:
            try:
                nodes = [n for n in self._held() if n is not None]
                kept = [call for call in older if any(n in call.presaved for n in nodes)][-KEEP_HELD:]
            except Exception as e:  # a namespace changed by another thread meanwhile: the last calls only
                if len(self.errors) < 20:
                    self.errors.append(f"could not tell which backward calls reach the cell's tensors: {e}")
        self._calls = kept + recent

    def _keep_grads(self, roots: object, order: list[Any] | None = None) -> None:
        """Tell ``grads`` the leaves a backward call from ``roots`` (whose graph is ``order``) reaches."""
        try:
            if order is None:
                items = roots if isinstance(roots, (list, tuple)) else [roots]
                order = walk([n for n in (_node_of(t) for t in items) if n is not None])[0]
            if self._grads is not None:
                self._grads.reached([n.variable for n in order if short_name(n) == ACCUMULATE_GRAD])
        except Exception as e:
            self.errors.append(f"could not keep .grad before a backward: {type(e).__name__}: {e}")

    def _before_backward(self, watch: _Watch) -> None:
        """Each leaf's ``.grad`` before a backward call: still what the spy's last call left, or not."""
        if self._grads is not None:
            self._keep_grads(None, watch.nodes)
        try:
            for i, node in enumerate(watch.nodes):
                if not watch.leaves[i]:
                    continue
                leaf = node.variable
                acc = self._accumulations.get(id(leaf))
                if acc is None or acc.leaf() is not leaf:
                    acc = self._accumulations[id(leaf)] = Accumulation(weakref.ref(leaf, self._forget(id(leaf))))
                grad = leaf.grad
                if not acc.unchanged(grad):  # first seen, or changed since (zeroed, set to None, clipped)
                    acc.calls = 0
                    with torch.no_grad():  # the norm stays a 0-d tensor: no sync
                        acc.before = None if grad is None else grad_meta(grad)
        except Exception as e:
            self.errors.append(f"could not follow .grad across backward calls: {type(e).__name__}: {e}")

    def _after_backward(self, watch: _Watch) -> None:
        try:
            for i in watch.metas:
                if not watch.leaves[i]:
                    continue
                leaf = watch.nodes[i].variable
                acc = self._accumulations.get(id(leaf))
                alive = None if acc is None else acc.leaf()
                if acc is None or alive is None or alive is not leaf:
                    continue
                grad = alive.grad
                if grad is None:  # a post-accumulate hook took it (an optimizer step in backward)
                    acc.calls, acc.before, acc.grad = 0, None, None
                else:
                    acc.calls += 1
                    acc.grad, acc.version = weakref.ref(grad), grad._version
        except Exception as e:
            self.errors.append(f"could not follow .grad across backward calls: {type(e).__name__}: {e}")

    def _forget(self, key: int) -> Callable[[Any], None]:
        def forget(ref: Any) -> None:
            acc = self._accumulations.get(key)
            if acc is not None and acc.leaf is ref:
                del self._accumulations[key]

        return forget

    def _finish(self, watch: _Watch) -> None:
        try:
            for call in self._calls:  # only the last call's gradient tensors: a loop in a cell keeps one step's
                for seen in [*(call.observed or {}).values(), *(call.produced or {}).values()]:
                    seen.tensors = None
            watch.close()
            watch.call.observed, watch.call.produced = watch.results()
        except Exception as e:
            self.errors.append(f"could not record the gradients of a backward: {type(e).__name__}: {e}")
        finally:
            watch.close()  # again, should the lines above have been interrupted: no hook stays
        if watch.accumulates:
            self._after_backward(watch)


def _wrap(fn: Callable[..., Any], first: str, live: list[BackwardSpy]) -> Callable[..., Any]:
    """``fn`` (``torch.autograd.backward``/``grad``, whose first argument is named ``first``) watched
    by the spy in ``live`` on its thread; other threads', and every call once ``live`` is emptied (the
    cell ended), go straight to ``fn``. Holds no spy of its own: one the cell bound to a name keeps
    nothing alive after it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # an error in the user's backward: IPython shows torch's frames, not ours
        spy = next(iter(live), None)
        if spy is None or threading.get_ident() != spy._thread:
            return fn(*args, **kwargs)
        return spy._call(fn, first, args, kwargs)

    return wrapper


@dataclass
class Accumulation:
    """One leaf's ``.grad`` across a cell's backward calls: ``calls`` of them added to it since it was
    None or last changed by anything else, on top of ``before`` (its grad_meta then: shape, …, norm as
    a 0-d tensor; None: it was None). ``grad``/``version``: the ``.grad`` the last call left (weakly:
    holding it would make autograd copy instead of adding in place)."""

    leaf: weakref.ref[torch.Tensor]
    calls: int = 0
    before: GradMeta = None
    grad: weakref.ref[torch.Tensor] | None = None
    version: int = -1

    def unchanged(self, grad: torch.Tensor | None) -> bool:
        """Is ``grad`` (the leaf's ``.grad`` now) still what the last call left?"""
        return grad is not None and self.grad is not None and self.grad() is grad and grad._version == self.version

    def held(self) -> bool:
        """Did ``.grad`` hold a nonzero gradient before the first of these calls?"""
        norm = None if self.before is None else self.before[4]
        return norm is not None and bool(norm != 0)

    def before_norm(self) -> float | None:
        norm = None if self.before is None else self.before[4]
        return None if norm is None else float(norm)


def _merged(calls: Iterable[dict[Any, V]]) -> dict[Any, V]:
    """Per node, what the latest call that went through it recorded."""
    merged: dict[Any, V] = {}
    for call in calls:
        merged.update(call)
    return merged


def _keeper(tensors: dict[str, torch.Tensor], budget: list[int]) -> Callable[[str, torch.Tensor], TensorSummary]:
    def keep(path: str, t: torch.Tensor) -> TensorSummary:
        cost = t.numel() * t.element_size()
        if cost <= budget[0]:
            budget[0] -= cost
            tensors[path] = t
            return summarize(t, stats=False)
        return summarize(t, stats=True)  # past the budget: statistics now, tensor dropped

    return keep


def _node_of(t: object) -> Any:
    if isinstance(t, torch.Tensor):
        return t.grad_fn
    return getattr(t, "node", None)  # torch.autograd.graph.GradientEdge
