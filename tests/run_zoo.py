"""Models for the runnable-debugger tests: the zoo of issue 3 (each a model, its inputs, a loss)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.checkpoint import checkpoint

from tests.zoo import Scale


@dataclass
class RunCase:
    model: nn.Module
    inputs: Any
    loss: Callable[[Any], torch.Tensor] | None


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(8, 16)
        self.layer2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x)))


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(F.relu(self.bn(self.conv(x)))).flatten(1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(F.relu(self.a(x))))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.lin(x)))


class InplaceReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.lin(x)))


class Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen_path = nn.Linear(4, 4)
        self.live_path = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.live_path(x) * self.frozen_path(x).detach()


class Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Scale.apply(self.lin(x), 1.5)


class Checkpointed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(checkpoint(self.inner, x, use_reentrant=False))


class DictIO(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(3, 3)
        self.aux = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, extra: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.enc(x) + self.aux(extra)
        return {"logits": h, "score": h.sigmoid().mean(1)}


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head_a = nn.Linear(4, 2)
        self.head_b = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.body(x))
        return self.head_a(h), self.head_b(h)


class Penalty(nn.Module):
    """A gradient penalty: the loss contains a gradient taken with create_graph=True."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(self.lin(x))
        (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return out.pow(2).mean() + gx.pow(2).sum()


class ReentrantCheckpointed(Checkpointed):
    """torch.autograd.grad refuses a reentrant checkpoint; its parameters are no leaves of the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(checkpoint(self.inner, x, use_reentrant=True))


class CheckpointedSpectral(nn.Module):
    """Spectral norm's power iteration updates buffers in every training forward, and a checkpointed
    region's forward runs again in backward: reading its saved tensors early would run it a third time."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = spectral_norm(nn.Linear(4, 4))
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(checkpoint(self.inner, x, use_reentrant=False))


class ReassignsBuffer(nn.Module):
    """A running average kept by reassigning the buffer (a new tensor object every forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("avg", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(x)
        if self.training:
            self.avg = 0.9 * self.avg + 0.1 * y.detach().mean(0)
        return y - self.avg


class RenormedEmbedding(nn.Module):
    """nn.Embedding(max_norm=...) renormalizes the looked-up rows of its weight in place."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4, max_norm=1.0)
        self.head = nn.Linear(4, 1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(idx) * 3.0)


class PythonRandom(nn.Module):
    """Draws from Python's and NumPy's generators (augmentation inside forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if random.random() < 0.5:
            x = x.flip(0)
        return self.lin(x * float(np.random.rand()))


def _mse(out: torch.Tensor) -> torch.Tensor:
    return out.pow(2).mean()


def make(name: str) -> RunCase:
    torch.manual_seed(0)
    if name == "mlp":
        return RunCase(MLP(), torch.randn(5, 8), lambda out: F.cross_entropy(out, torch.tensor([0, 1, 2, 3, 0])))
    if name == "conv_bn":
        return RunCase(ConvBN(), torch.randn(2, 3, 5, 5), _mse)
    if name == "residual":
        return RunCase(Residual(), torch.randn(3, 6, requires_grad=True), _mse)
    if name == "shared_weights":
        return RunCase(Shared(), torch.randn(2, 5), _mse)
    if name == "inplace_relu":
        return RunCase(InplaceReLU(), torch.randn(3, 4), _mse)
    if name == "detach":
        return RunCase(Detached(), torch.randn(2, 4), _mse)
    if name == "custom_function":
        return RunCase(Custom(), torch.randn(2, 3), _mse)
    if name == "checkpoint":
        return RunCase(Checkpointed(), torch.randn(2, 4, requires_grad=True), _mse)
    if name == "dict_io":
        inputs = {"x": torch.randn(2, 3), "extra": torch.randn(2, 2, requires_grad=True)}
        return RunCase(DictIO(), inputs, lambda out: out["logits"].pow(2).sum() + out["score"].sum())
    if name == "two_losses":
        return RunCase(TwoHeads(), torch.randn(3, 4), lambda out: out[0].pow(2).mean() + out[1].abs().mean())
    if name == "double_backward":
        return RunCase(Penalty(), torch.randn(4, 3, requires_grad=True), None)
    if name == "reentrant_checkpoint":
        return RunCase(ReentrantCheckpointed(), torch.randn(2, 4, requires_grad=True), _mse)
    if name == "checkpoint_spectral":
        return RunCase(CheckpointedSpectral(), torch.randn(3, 4), _mse)
    if name == "reassigned_buffer":
        return RunCase(ReassignsBuffer(), torch.randn(3, 4), _mse)
    if name == "renormed_embedding":
        return RunCase(RenormedEmbedding(), torch.tensor([1, 2, 2, 7]), _mse)
    if name == "python_random":
        random.seed(0)
        np.random.seed(0)
        return RunCase(PythonRandom(), torch.randn(3, 4), _mse)
    raise KeyError(name)


CASES = [
    "mlp", "conv_bn", "residual", "shared_weights", "inplace_relu", "detach", "custom_function", "checkpoint",
    "dict_io", "two_losses", "double_backward", "reentrant_checkpoint", "checkpoint_spectral", "reassigned_buffer",
    "renormed_embedding", "python_random",
]  # fmt: skip


def call(case: RunCase) -> Any:
    if isinstance(case.inputs, dict):
        return case.model(**case.inputs)
    if isinstance(case.inputs, tuple):
        return case.model(*case.inputs)
    return case.model(case.inputs)


def input_leaves(case: RunCase) -> dict[str, torch.Tensor]:
    items = case.inputs.items() if isinstance(case.inputs, dict) else [("input", case.inputs)]
    return {k: v for k, v in items if isinstance(v, torch.Tensor) and v.requires_grad}
