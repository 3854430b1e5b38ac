"""The view's `ping` (js/connection.ts: is the comm still alive after ipywidgets' comm_live_update?)
is answered ok, also by a closed debugger, and changes nothing."""

from __future__ import annotations

from unittest.mock import MagicMock

import torch
from torch import nn

import gradsight as gs


def test_ping_is_answered_ok_and_changes_nothing() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda o: o.sum())
    graph, status, pending = dbg.graph, dbg.status, dict(dbg.pending)
    for closed in (False, True):
        if closed:
            dbg.close()
        sent = MagicMock()
        dbg.send = sent  # type: ignore[method-assign]
        dbg._on_msg(dbg, {"type": "ping", "request_id": ""}, [])
        assert sent.call_args.args[0] == {"type": "ping", "request_id": "", "ok": True}
        assert dbg.graph is graph and dbg.status == status and dbg.pending == pending
