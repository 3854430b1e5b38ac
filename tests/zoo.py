"""A small model zoo for tests and goldens: the seed notebook's examples and a few classics.

Each entry builds, deterministically, the tensors to debug and what names their leaves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Case:
    roots: list[torch.Tensor]
    params: Any = None
    keep: Any = None  # objects that must stay alive while the case is used


class TinyModel(nn.Module):
    """The seed notebook's model."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(1000, 100)
        self.relu = nn.ReLU()
        self.layer2 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.relu(self.layer1(x)))


class Scale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, k: float) -> torch.Tensor:
        ctx.save_for_backward(a)
        ctx.k = k
        return a * k

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.k, None


def seed_sin() -> Case:
    input1 = torch.linspace(0.0, 2.0 * math.pi, steps=25, requires_grad=True)
    out3 = 2 * torch.sin(input1) + 1
    return Case([out3], {"input1": input1})


def seed_tiny_model() -> Case:
    torch.manual_seed(0)
    model = TinyModel()
    batch = torch.randn(16, 1000)
    expected = torch.randn(16, 10)
    loss = (expected - model(batch)).pow(2).sum()
    return Case([loss], model, keep=model)


def seed_vjp() -> Case:
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    return Case([x * 2], {"x": x})


def seed_mul_two_leaves() -> Case:
    a = torch.ones(2, 3, requires_grad=True)
    b = torch.ones(2, 3, requires_grad=True)
    return Case([a * b], {"a": a, "b": b})


def conv_bn() -> Case:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    loss = F.cross_entropy(model(torch.randn(2, 3, 4, 4)), torch.tensor([0, 1]))
    return Case([loss], model, keep=model)


def custom_function_and_dims() -> Case:
    torch.manual_seed(2)
    t = torch.randn(2, 3, requires_grad=True)
    out = Scale.apply(t.softmax(-1), 3.0).sum(-1).mean()
    return Case([out], {"t": t})


def two_roots() -> Case:
    torch.manual_seed(3)
    w = torch.randn(3, requires_grad=True)
    shared = w.exp()
    return Case([shared.sum(), (shared * 2).mean()], {"w": w})


ZOO: dict[str, Callable[[], Case]] = {
    "seed_sin": seed_sin,
    "seed_tiny_model": seed_tiny_model,
    "seed_vjp": seed_vjp,
    "seed_mul_two_leaves": seed_mul_two_leaves,
    "conv_bn": conv_bn,
    "custom_function_and_dims": custom_function_and_dims,
    "two_roots": two_roots,
}
