"""Benchmark models sized by depth (tiny tensors, so per-node overhead dominates: worst case)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    NODES_PER_LAYER = 5  # Addmm, T, Relu, 2 x AccumulateGrad

    def __init__(self, depth: int, width: int = 64, batch: int = 32) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.width = width
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.relu(layer(x))
        return x

    def example_input(self) -> torch.Tensor:
        return torch.randn(self.batch, self.width)


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + x)


class ResNet(nn.Module):
    NODES_PER_LAYER = 13

    def __init__(self, depth: int, c: int = 8, hw: int = 8, batch: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.blocks = nn.Sequential(*[Block(c) for _ in range(depth)])
        self.head = nn.Linear(c, 10)
        self.hw, self.batch = hw, batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))

    def example_input(self) -> torch.Tensor:
        return torch.randn(self.batch, 3, self.hw, self.hw)


class Transformer(nn.Module):
    NODES_PER_LAYER = 56

    def __init__(self, depth: int, d: int = 32, seq: int = 16, batch: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(depth)
        )
        self.d, self.seq, self.batch = d, seq, batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def example_input(self) -> torch.Tensor:
        return torch.randn(self.batch, self.seq, self.d)


ARCHS: dict[str, type[MLP] | type[ResNet] | type[Transformer]] = {
    "mlp": MLP,
    "resnet": ResNet,
    "transformer": Transformer,
}


def build(arch: str, nodes: int) -> tuple[nn.Module, torch.Tensor]:
    """A model of about ``nodes`` backward nodes and its loss (forward already run)."""
    cls = ARCHS[arch]
    torch.manual_seed(0)
    model = cls(max(1, nodes // cls.NODES_PER_LAYER))
    loss = model(model.example_input()).pow(2).mean()
    return model, loss


# About 1k backward nodes each, with realistic tensor sizes (research/autograd-facts.md §5.3).
REALISTIC: dict[str, tuple[type[nn.Module], dict[str, int]]] = {
    "mlp w256 b128": (MLP, {"depth": 200, "width": 256, "batch": 128}),
    "resnet c16 16x16 b8": (ResNet, {"depth": 76, "c": 16, "hw": 16, "batch": 8}),
    "transformer d128 s64 b4": (Transformer, {"depth": 18, "d": 128, "seq": 64, "batch": 4}),
    "mlp w1024 b512 (bigger tensors)": (MLP, {"depth": 50, "width": 1024, "batch": 512}),
    "resnet c32 32x32 b8 (bigger tensors)": (ResNet, {"depth": 76, "c": 32, "hw": 32, "batch": 8}),
    "transformer d512 s128 b8 (bigger tensors)": (Transformer, {"depth": 6, "d": 512, "seq": 128, "batch": 8}),
    # models as people train them: a few wide layers, a small CIFAR-sized ResNet, a short encoder stack
    "mlp 4x1024 b256 (typical)": (MLP, {"depth": 4, "width": 1024, "batch": 256}),
    "resnet 8 blocks c32 32x32 b16 (typical)": (ResNet, {"depth": 8, "c": 32, "hw": 32, "batch": 16}),
    "transformer 4 layers d256 s128 b8 (typical)": (Transformer, {"depth": 4, "d": 256, "seq": 128, "batch": 8}),
}


def realistic(name: str) -> tuple[nn.Module, torch.Tensor]:
    cls, kwargs = REALISTIC[name]
    torch.manual_seed(0)
    model = cls(**kwargs)
    return model, model.example_input()  # type: ignore[operator]


class UnrolledRNN(nn.Module):
    """An LSTM cell unrolled over ``steps`` time steps: a very deep, narrow backward graph."""

    NODES_PER_LAYER = 15

    def __init__(self, depth: int, hidden: int = 32) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(hidden, hidden)
        self.steps, self.hidden = depth, hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], self.hidden)
        for t in range(self.steps):
            h, c = self.cell(x[:, t % x.shape[1]], (h, c))
        return h

    def example_input(self) -> torch.Tensor:
        return torch.randn(4, 8, self.hidden)


ARCHS["rnn"] = UnrolledRNN
