"""The ``training`` flags a run ran with, and a re-run that replays them.

A re-run is compared with the run shown (the diff): if the user called ``model.eval()`` since (a
validation pass between epochs), a re-run in eval mode would drop dropout and use BatchNorm's running
statistics, and the diff would credit the toggle with that change. So each run records its modules'
flags (by name: a module replaced since is neither kept alive nor set), a re-run sets them for its
duration and puts the user's back afterwards (also when it raises), and a note says when they differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch

Flags = tuple[tuple[str, bool], ...]  # (module name, its ``training`` flag), in the model's order


def flags_of(modules: Iterable[tuple[str, torch.nn.Module]]) -> Flags:
    """Each named module's ``training`` flag now (cheap: one attribute read a module)."""
    return tuple((name, bool(m.training)) for name, m in modules)


@contextmanager
def replaying(modules: Iterable[tuple[str, torch.nn.Module]], flags: Flags) -> Iterator[None]:
    """Run with the modules' flags set as in ``flags`` (the ones recorded), the user's put back after.
    The flag itself is set: ``train()``/``eval()`` would recurse, and a user's override could do more."""
    recorded = dict(flags)
    changed: list[tuple[torch.nn.Module, bool]] = []
    try:
        for name, module in modules:
            then = recorded.get(name)
            if then is not None and module.training != then:
                changed.append((module, module.training))
                module.training = then
        yield
    finally:
        for module, now in changed:
            module.training = now


def flags_note(modules: Iterable[tuple[str, torch.nn.Module]], flags: Flags, shown: str) -> str | None:
    """What a re-run says when the modules' flags now differ from those ``shown`` (the run replayed) ran
    with, or None when they are the same."""
    now = dict(flags_of(modules))
    differ = [(name, then) for name, then in flags if name in now and now[name] != then]
    if not differ:
        return None
    if all(then for _, then in differ):
        what, mode = "model.eval() was called", "eval mode"
    elif not any(then for _, then in differ):
        what, mode = "model.train() was called", "train mode"
    else:
        what, mode = "modules' train/eval modes changed", "the modes as they are now"
    which = ", ".join(repr(name) if name else "the model" for name, _ in differ[:4])
    more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
    return (
        f"{what} since {shown} ({which}{more}): the re-run uses {shown}'s train/eval modes, so the diff shows "
        f"the toggles alone, and your modules' flags are left as they are now. Create a new debugger to see "
        f"{mode}."
    )
