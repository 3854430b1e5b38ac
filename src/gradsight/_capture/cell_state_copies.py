"""An optimizer's state put in place for a ``%%gradsight`` cell's re-run, and given back after it (``cell_start``).

``opt.load_state_dict(saved)`` replaces the optimizer's ``param_groups`` dicts and its state tensors with
new objects: a user's ``g = opt.param_groups[0]``, or ``m = opt.state[w]['exp_avg']``, would go stale
after a re-run (and a compiled optimizer's guards hold those objects too). So both directions work in
the objects the optimizer holds: :func:`start_from` copies a saved ``state_dict`` into them (a group's
hyperparameters in the same dict, its ``params`` list untouched; a state tensor with ``copy_``; an entry
the saved state lacks removed, one it has re-created), and :class:`Held` keeps the user's objects
before a re-run and puts those very objects back after it, with their values and version counters.
An LR scheduler's or a GradScaler's ``load_state_dict`` already works in place (``__dict__.update``,
``_scale.fill_``): theirs is used.

>>> w = torch.nn.Parameter(torch.ones(2))
>>> opt = torch.optim.Adam([w], lr=0.1)
>>> w.grad = torch.ones(2); opt.step()
>>> held, group, avg = Held(opt), opt.param_groups[0], opt.state[w]["exp_avg"]
>>> opt.step(); opt.param_groups[0]["lr"] = 0.5
>>> held.give_back()
>>> opt.param_groups[0] is group and opt.state[w]["exp_avg"] is avg, group["lr"], float(opt.state[w]["step"])
(True, 0.1, 1.0)
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from .guard import set_versions, version_of


def params_of(opt: Any) -> list[torch.Tensor]:
    """An optimizer's parameters (an LR scheduler steps no parameter)."""
    groups = getattr(opt, "param_groups", None) if isinstance(opt, torch.optim.Optimizer) else None
    return [p for group in groups or () for p in group.get("params", ()) if isinstance(p, torch.Tensor)]


def state_cost(state: Any) -> int:
    """The bytes of the tensors in an optimizer's ``state_dict`` (Adam: twice its parameters)."""
    out, todo = 0, [state]
    while todo:
        value = todo.pop()
        if isinstance(value, torch.Tensor):
            out += 0 if value.is_meta else value.numel() * value.element_size()
        elif isinstance(value, dict):
            todo.extend(value.values())
        elif isinstance(value, (list, tuple)):
            todo.extend(value)
    return out


def start_from(obj: Any, saved: dict[str, Any]) -> None:
    """``obj`` (an optimizer, LR scheduler or GradScaler) holds ``saved``, a deep copy of a ``state_dict()``
    of its own, which stays untouched. An optimizer's is copied into its own dicts and tensors; where the
    optimizer's groups or parameters no longer match it (``add_param_group`` since), ``load_state_dict``
    (which refuses a mismatch: the caller names the optimizer as not started)."""
    if not in_place(obj) or not _fits(obj, saved):
        obj.load_state_dict(copy.deepcopy(saved))
        return
    with torch._C.DisableTorchFunction(), torch.no_grad():
        for group, kept in zip(obj.param_groups, saved["param_groups"], strict=True):
            _update(group, {k: v for k, v in kept.items() if k != "params"}, keep="params")
        state = saved["state"]
        for i, p in enumerate(params_of(obj)):
            if i not in state:
                obj.state.pop(p, None)  # a step since created it
                continue
            entry = obj.state.get(p)
            if not isinstance(entry, dict):
                entry = obj.state[p] = {}
            _update(entry, state[i])


def in_place(obj: Any) -> bool:
    """Is ``obj`` an optimizer whose whole state is its ``param_groups`` and ``state`` — torch's own
    ``state_dict`` / ``load_state_dict``, no hooks on them — so that putting those in place is all
    that ``load_state_dict`` would do? A subclass's own ``state_dict`` keys (a warmup counter, a
    Lookahead's slow weights) or hooks are only restored by its ``load_state_dict``: that one is used."""
    if not isinstance(obj, torch.optim.Optimizer):
        return False
    kind = type(obj)
    if kind.state_dict is not torch.optim.Optimizer.state_dict or \
            kind.load_state_dict is not torch.optim.Optimizer.load_state_dict:  # fmt: skip
        return False
    hooks = ("_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
             "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks")  # fmt: skip
    return not any(getattr(obj, name, None) for name in hooks)


def _fits(opt: torch.optim.Optimizer, saved: Any) -> bool:
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    state = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or not isinstance(state, dict) or len(groups) != len(opt.param_groups):
        return False
    if any(len(kept.get("params", ())) != len(g["params"]) for kept, g in zip(groups, opt.param_groups, strict=True)):
        return False
    count = sum(len(g["params"]) for g in opt.param_groups)
    return all(isinstance(i, int) and 0 <= i < count and isinstance(e, dict) for i, e in state.items())


def _update(target: dict[Any, Any], saved: dict[Any, Any], keep: str | None = None) -> None:
    """``target`` holds ``saved``'s items, in its own tensors where their shape, dtype and device still match."""
    for key in [k for k in target if k not in saved and k != keep]:
        del target[key]
    for key, value in saved.items():
        current = target.get(key)
        if isinstance(value, torch.Tensor) and isinstance(current, torch.Tensor) and _same_kind(current, value):
            if current is not value:
                current.copy_(value)
        else:  # a copy: the saved state stays as it was, whatever the re-run does to the optimizer's
            target[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def _same_kind(current: torch.Tensor, value: torch.Tensor) -> bool:
    return (
        type(current) is type(value)
        and current.shape == value.shape
        and current.dtype == value.dtype
        and current.device == value.device
    )


class Held:
    """What a stateful object holds before a re-run (:func:`namespace_guard.has_state`), put back by
    :meth:`give_back`: an optimizer's own objects (its ``param_groups`` list, each group dict and
    ``params`` list, its ``state`` dict and each entry dict with the tensors in it) with their values and
    version counters; an LR scheduler's or GradScaler's state through its ``load_state_dict``.
    Raises where ``state_dict()`` or the copy does (out of memory): the caller leaves the object out."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.saved: dict[str, Any] = copy.deepcopy(obj.state_dict())
        self._objects: tuple[Any, ...] | None = None
        if in_place(obj):
            groups, state = obj.param_groups, obj.state
            params = [(g, g.get("params"), list(g.get("params") or ())) for g in groups]
            entries = {p: (e, dict(e)) for p, e in state.items() if isinstance(e, dict)}
            self._objects = (groups, list(groups), params, state, entries)
            values = [v for g in groups for k, v in g.items() if k != "params"]
            values += [v for e, _ in entries.values() for v in e.values()]
            self._versions = [(t, version_of(t)) for t in values if isinstance(t, torch.Tensor)]

    def give_back(self) -> None:
        """The object as it was when this was taken (raises where its ``load_state_dict`` does)."""
        opt = self.obj
        if self._objects is None:
            opt.load_state_dict(copy.deepcopy(self.saved))
            return
        groups, group_items, params, state, entries = self._objects
        if opt.__dict__.get("param_groups") is not groups:
            opt.param_groups = groups  # a load_state_dict in the re-run made new ones
        if len(groups) != len(group_items) or any(g is not h for g, h in zip(groups, group_items, strict=True)):
            groups[:] = group_items
        for group, listed, items in params:
            if group.get("params") is not listed:
                group["params"] = listed
            if isinstance(listed, list) and (len(listed) != len(items) or any(
                    p is not q for p, q in zip(listed, items, strict=True))):  # fmt: skip
                listed[:] = items
        if opt.__dict__.get("state") is not state:
            opt.state = state
        state.clear()
        for p, (entry, items) in entries.items():
            state[p] = entry
            entry.clear()
            entry.update(items)  # the tensors the user may hold: start_from copies the values into them
        start_from(opt, self.saved)
        set_versions(self._versions)  # a graph that saved one of them still backwards
