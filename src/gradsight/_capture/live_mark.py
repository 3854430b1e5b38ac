"""Live step numbers count training steps — backward passes — not calls of the model
(:class:`Numbers`). A pass takes its number as it first reaches a forward of the model: a forward no
backward ever reaches (a DQN target network's ``model(s2).max(1)[0].detach()``, a validation forward
without ``no_grad``) is no step, and the calls of a siamese step's one pass are one step.

A pass that builds a graph of its own (``create_graph=True``: a gradient penalty's
``autograd.grad``, a Hessian-vector product's first gradient) does not end its step: the gradient it
makes is there to be differentiated again, by the step's later backward. So the next pass of its
thread takes its number too, if it takes a number: a ``create_graph=False`` one (WGAN-GP's
``loss.backward()``, whether the critic's real and fake calls came before the penalty or after it),
or another ``create_graph`` pass before the model is called again (higher derivatives of one
forward). The next pass, by the engine's pass ids (they count every pass of the process): a pass in
between that reached no forward of the model differentiated the gradient alone and ended the step —
StyleGAN2's lazy R1 (``r1 = grad(D(real).sum(), real, create_graph=True)``, then
``r1.pow(2).sum().backward()``, which runs D's graph below its output, where no hook is): the
generator's backward after it is a step of its own. Only passes of other threads that reached the
model are known not to be that thread's; any other pass in between (an unrelated model's backward)
ends the step too: a step counted twice rather than two merged. A ``create_graph`` pass after
another call of the model with gradients on, on its thread, is a new step — a loop that only ever
takes ``create_graph`` gradients numbers each iteration — and so is any pass after the end of a
notebook cell. Nothing tells which graph a later pass differentiates, so this is a rule of order: a
MAML step's inner ``create_graph`` gradient of each task is a step, the outer backward shares the
last task's number. The held number is kept per thread that called ``backward()``: a pass's hooks
run on that thread, or on a CUDA device's autograd thread, where the caller is the one thread inside
a backward call (:func:`backward_caller`).

A forward live mode does not capture gets one pre-hook on each output's ``grad_fn`` (:class:`Marks`,
one :class:`Mark` shared by them): it fires once. :meth:`Marks.close` (the session's ``close()``)
removes those still on a graph. A captured step numbers itself as its first pass begins
(``LiveStep._queue_pass_end``).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from types import FrameType
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from .outputs import flatten_tensors
from .threads import _RUN_BACKWARD

_graph_task_id = torch._C._current_graph_task_id  # -1 outside a backward pass on this thread; ids never repeat
PASSES_KEPT = 8  # the passes whose number is remembered (threads training at once interleave theirs)
PRUNE_AT = 64  # the marks kept before the first look for those that can no longer fire


class Numbers:
    """A live session's step numbers (``steps``: the last one given). Holds nothing but numbers: the
    hooks of a graph that outlives the session may hold it."""

    def __init__(self) -> None:
        self.steps = 0
        self._lock = threading.Lock()
        # (under _lock) the last passes' graph task ids -> their number, and the thread that called them
        self._passes: dict[int, tuple[int, int]] = {}
        # (under _lock) per thread that called it: the last create_graph pass's number, whether the
        # model was not called since on that thread, and the pass's graph task id (see the module)
        self._held: dict[int, tuple[int, bool, int]] = {}

    def count(self, mark: Mark | None = None, *, new: bool = False) -> int:
        """The number of the step of the backward pass running on this thread: a new one, unless this
        pass already took one at another call of the model (a siamese step's), or a ``create_graph``
        pass just before it left its step open (see the module). ``mark``: the forward's mark that
        fires, set done here (0: it had fired already). ``new``: a step no pass reached (its backward
        raised above the model) takes a number of its own, or the open step's."""
        task = -1 if new else _graph_task_id()
        with self._lock:
            if mark is not None:
                if mark.done:
                    return 0
                mark.done = True
            known = None if task == -1 else self._passes.get(task)
            if known is not None:
                return known[0]
            thread = threading.get_ident() if task == -1 else backward_caller()
            makes_graph = task != -1 and torch.is_grad_enabled()  # the engine's grad mode is create_graph
            held = self._held.pop(thread, None)
            if held is not None and (held[1] or not makes_graph) and self._next(held[2], task, thread):
                number = held[0]
            else:
                self.steps += 1
                number = self.steps
            if makes_graph:
                self._held[thread] = (number, True, task)
            if task != -1:
                self._passes[task] = (number, thread)
                if len(self._passes) > PASSES_KEPT:
                    del self._passes[next(iter(self._passes))]
            return number

    def _next(self, held: int, task: int, thread: int) -> bool:
        """(Under ``_lock``) is pass ``task`` the next of ``thread`` after its pass ``held``: each pass
        between them (graph task ids count every pass of the process) one another thread ran? A pass
        that reached no forward is unknown here: taken as this thread's (the penalty's own backward)."""
        if task == -1:  # a step no pass reached: no pass id to tell
            return True
        between = range(held + 1, task)
        return len(between) <= PASSES_KEPT and all(self._passes.get(t, (0, thread))[1] != thread for t in between)

    def called(self) -> None:
        """The model was called with gradients on, on this thread: a ``create_graph`` pass of this
        thread from now on is a new step."""
        if self._held:  # (the common case, read without the lock: nothing held)
            here = threading.get_ident()
            with self._lock:
                held = self._held.get(here)
                if held is not None:
                    self._held[here] = (held[0], False, held[2])

    def cell_ended(self) -> None:
        """A notebook cell ended: the next pass is a new step, whatever the last one kept."""
        with self._lock:
            self._held.clear()


def backward_caller() -> int:
    """The thread that called the backward pass running now (a hook's thread, or, on a CUDA device's
    autograd thread, the one thread inside a backward call; several: this one, whose hold no pass of
    a user's thread takes)."""
    here = threading.get_ident()
    if in_backward(sys._getframe(1)):
        return here
    callers = [t for t, f in sys._current_frames().items() if t != here and in_backward(f)]
    return callers[0] if len(callers) == 1 else here


def in_backward(frame: FrameType | None) -> bool:
    """Is ``frame`` inside a ``backward()`` or ``torch.autograd.grad`` call (in torch's engine)?"""
    while frame is not None:
        if frame.f_code is _RUN_BACKWARD:
            return True
        frame = frame.f_back
    return False


class Mark:
    """The pre-hook on an uncaptured forward's outputs: the first pass that runs one of them takes a
    step number; later passes, and its other outputs in that pass, do nothing."""

    __slots__ = ("done", "numbers")

    def __init__(self, numbers: Numbers) -> None:
        self.numbers = numbers
        self.done = False  # (set under the numbers' lock: two device threads may run its nodes at once)

    def __call__(self, grad_outputs: Any) -> None:
        if self.done:
            return
        # A step number is a courtesy: it never raises into the user's backward. Nor is a failure worth
        # an error in the view (count() only takes a lock and adds one).
        with contextlib.suppress(Exception):
            self.numbers.count(self)


class Marks:
    """The marks a session put on uncaptured forwards' outputs, kept so that ``close()`` removes them.
    Only those that may still fire are kept: a mark that fired is taken off its node, one whose graph
    is gone (or that a later mark replaced) is forgotten — looked for each time the list doubles, so a
    long training run keeps about as many as it has live graphs. A node carries one mark of the
    session: a model that returns the same tensor at every call (a cached output) moves it, not adds
    one. Holds the handles (weak references to the nodes' hook dicts), never a graph."""

    def __init__(self, numbers: Numbers) -> None:
        self.numbers = numbers
        self._lock = threading.Lock()
        self._kept: list[tuple[Mark, RemovableHandle]] = []  # (under _lock)
        self._prune_at = PRUNE_AT
        self._closed = False

    def __len__(self) -> int:
        return len(self._kept)

    def mark(self, output: Any) -> None:
        """Number the step of the first backward pass that reaches ``output`` (a forward's result: a
        tensor or a structure of them). Outputs without a ``grad_fn`` need no backward."""
        if isinstance(output, torch.Tensor):
            fns = [] if output.grad_fn is None else [output.grad_fn]
        else:  # outputs that share a node (views of one result) hook it once
            fns = list(dict.fromkeys(t.grad_fn for t in flatten_tensors(output) if t.grad_fn is not None))
        if not fns:
            return
        hook = Mark(self.numbers)
        handles: list[RemovableHandle] = []
        with contextlib.suppress(Exception):  # a node that takes no hook: its step goes unnumbered, unsaid
            for fn in fns:
                handles.append(fn.register_prehook(hook))
                self._replace(handles[-1])
        with self._lock:
            if not self._closed:
                self._kept += [(hook, handle) for handle in handles]
                if len(self._kept) >= self._prune_at:
                    self._prune()
                return
        for handle in handles:  # close() ran meanwhile (on another thread)
            handle.remove()

    def _replace(self, handle: RemovableHandle) -> None:
        """Take this session's earlier marks off the node ``handle`` just hooked."""
        hooks = handle.hooks_dict_ref()
        if hooks is None:
            return
        for key, hook in list(hooks.items()):
            if key != handle.id and isinstance(hook, Mark) and hook.numbers is self.numbers:
                hooks.pop(key, None)

    def _prune(self) -> None:
        """(Under ``_lock``) drop the marks that can no longer fire."""
        kept = []
        for hook, handle in self._kept:
            hooks = handle.hooks_dict_ref()
            if hooks is None or handle.id not in hooks:  # its graph is gone, or a later mark replaced it
                continue
            if hook.done:
                handle.remove()
                continue
            kept.append((hook, handle))
        self._kept = kept
        self._prune_at = max(PRUNE_AT, 2 * len(kept))

    def close(self) -> None:
        """Remove every mark still on a node; later ones are removed at once."""
        with self._lock:
            self._closed = True
            kept, self._kept = self._kept, []
        for _, handle in kept:
            handle.remove()
