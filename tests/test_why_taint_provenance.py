"""why() takes a tensor made from an array (or Python numbers) to be made of values that left torch
earlier (``.numpy()``, ``.tolist()``) only where it can be: not a DataLoader worker's batch, nor a row of
an array the code already held (a dataset); where it cannot tell, a certain cut on the path (the detach)
is named first and the round trip only as a possibility."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import gradsight as gs


@pytest.mark.parametrize("tensor_of", [torch.from_numpy, torch.as_tensor])
def test_a_dataset_row_after_a_logged_array_is_not_taken_for_the_logged_values(
    tensor_of: Callable[[np.ndarray], torch.Tensor],
) -> None:
    torch.manual_seed(0)
    enc, head = nn.Linear(3, 3), nn.Linear(3, 1)
    data = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    logged: list[float] = []

    def step() -> torch.Tensor:
        for i in range(2):
            h = enc(tensor_of(data[i]) * 1.0).detach()  # the cut
            logged.append(float(h.numpy().mean()))  # logging only
            loss = head(h).pow(2).mean()
        return loss

    why = gs.debugger(step).why("enc.weight")
    assert why.reason == "detach" and "round trip" not in why.message, why
    assert why.source is not None and "# the cut" in why.source


def test_a_dataloader_worker_batch_after_logged_predictions_is_not_taken_for_them() -> None:
    torch.manual_seed(0)
    enc, head = nn.Linear(3, 3), nn.Linear(3, 1)
    loader = DataLoader(TensorDataset(torch.randn(8, 3), torch.randn(8, 1)), batch_size=4, num_workers=1)
    preds: list[int] = []

    def step() -> torch.Tensor:
        for xb, yb in loader:
            out = head(enc(xb.to("cpu")).detach())  # the cut
            preds.extend(out.argmax(1).tolist())  # logging only
            loss = (out - yb.to("cpu")).pow(2).mean()
        return loss

    why = gs.debugger(step).why("enc.weight")
    assert why.reason == "detach" and "round trip" not in why.message, why
    assert why.source is not None and "# the cut" in why.source


def test_an_array_of_unknown_origin_on_a_detached_path_names_the_detach_and_the_round_trip_as_a_maybe() -> None:
    torch.manual_seed(0)
    enc, head = nn.Linear(3, 3), nn.Linear(3, 1)
    rng = np.random.default_rng(0)
    logged: list[float] = []

    def step() -> torch.Tensor:
        for _ in range(2):  # the second batch is a new array: gradsight cannot tell it is not made of h
            xb = torch.from_numpy(rng.standard_normal((4, 3)).astype(np.float32))
            h = enc(xb / 2).detach()  # the cut
            logged.append(float(h.numpy().mean()))  # logging only
            loss = head(h).pow(2).mean()
        return loss

    why = gs.debugger(step).why("enc.weight")
    assert why.reason == "detach" and why.message.startswith("enc.weight's path to the loss is cut by detach()"), why
    assert why.source is not None and "# the cut" in why.source
    assert "if that tensor is made from them, that round trip cuts the path too" in why.message
    assert ".numpy()" in why.message and "# logging only" in why.message
