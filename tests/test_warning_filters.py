"""gradsight's own warning filters leave the user's "once" warnings alone: adding and removing a
filter the usual way (``filterwarnings``, ``catch_warnings``) empties every module's registry, and
each such warning showed again after every debugger run. (A plain IPython cell re-arms them itself.)"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import gradsight as gs


def _warn_once() -> None:
    warnings.warn("a deprecation the user saw once", DeprecationWarning, stacklevel=1)


def _run_and_step(model: nn.Module) -> None:
    gs.debugger(model, inputs=torch.randn(2, 3)).close()  # a runnable run: module hooks, warnings re-homed
    live = gs.debugger(model)
    model(torch.randn(2, 3)).sum().backward()  # a captured live step
    live.close()


def test_debugger_runs_and_live_steps_do_not_rearm_once_warnings() -> None:
    model = nn.Linear(3, 1)
    _run_and_step(model)  # first use: lazy imports may add filters of their own
    shown: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        real = warnings.showwarning
        warnings.showwarning = lambda message, *_, **__: shown.append(str(message))
        try:
            _warn_once()
            _run_and_step(model)
            _warn_once()
        finally:
            warnings.showwarning = real
    assert shown == ["a deprecation the user saw once"]
