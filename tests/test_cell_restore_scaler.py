"""What a ``%%gradsight`` cell's re-runs start from when the cell uses an AMP ``GradScaler``
(``scaler.step(opt)``, ``scaler.update()``), and when a copy before the first run fails."""

from __future__ import annotations

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs
from gradsight._capture import cell_start


def grads(graph: gs.Graph) -> dict[str, float | None]:
    return {n.leaf.name: n.grad_in[0].norm for n in graph.leaves if n.leaf is not None and n.leaf.name}


SCALED = (
    "%%gradsight\nloss = model(x).pow(2).sum()\nopt.zero_grad()\nscaler.scale(loss).backward()\n"
    "scaler.step(opt)\nscaler.update()"
)


def test_a_rerun_scales_by_the_first_runs_scale_and_leaves_the_users_scaler_as_it_was(
    shell: InteractiveShell,
) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nx = torch.randn(8, 4)\n"
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "scaler = torch.amp.GradScaler('cpu', init_scale=4.0, growth_interval=1)",
        store_history=False,
    )
    dbg = shell.run_cell(SCALED, store_history=False).result
    scaler, model = shell.user_ns["scaler"], shell.user_ns["model"]
    assert scaler.get_scale() == 8.0  # the first run grew it, as a plain cell would
    weight = model.weight.detach().clone()
    first = grads(dbg.graph)
    for _ in range(2):
        graph = dbg.rerun()
        got = grads(graph)
        assert got["model.weight"] == pytest.approx(first["model.weight"])  # scaled by 4 again, from the first weights
        assert got["model.bias"] == pytest.approx(first["model.bias"])
        assert scaler.get_scale() == 8.0
        assert torch.equal(model.weight, weight)  # scaler.step(opt) stepped opt: its parameters went back too


def test_a_copy_that_fails_before_the_first_run_is_named_in_the_reruns_graph(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nimages = torch.full((8, 4), 255.0)", store_history=False
    )
    real = cell_start.detached_copy

    def out_of_memory(t: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(cell_start, "detached_copy", out_of_memory)
    real_init = cell_start.FirstState.__init__

    def init(self: cell_start.FirstState, *args: object, **kwargs: object) -> None:
        try:
            real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            monkeypatch.setattr(cell_start, "detached_copy", real)  # only the first run's copies fail

    monkeypatch.setattr(cell_start.FirstState, "__init__", init)
    dbg = shell.run_cell("%%gradsight\nimages /= 255\nloss = model(images).sum()\nloss.backward()").result
    images = shell.user_ns["images"]
    after, version = images.clone(), images._version
    graph = dbg.rerun()
    (note,) = [n for n in graph.notes if "in place" in n]
    assert "images" in note
    assert torch.equal(images, after) and images._version == version
