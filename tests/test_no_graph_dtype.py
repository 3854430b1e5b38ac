"""What ``gradsight.debugger(t)`` says of an integer or bool tensor: its dtype with the article it is
read with ("an int64 tensor", "a uint8 tensor"), not "a int64"."""

from __future__ import annotations

import itertools

import pytest
import torch

import gradsight as gs


@pytest.mark.parametrize(
    ("dtype", "said"),
    [(torch.int64, "an int64"), (torch.int8, "an int8"), (torch.uint8, "a uint8"), (torch.bool, "a bool")],
)
def test_an_integer_tensors_message_reads_its_dtype_with_its_article(dtype: torch.dtype, said: str) -> None:
    message = gs.debugger(torch.zeros(3, dtype=dtype)).graph.message
    assert message is not None and message.startswith(f"the tensor is {said} tensor, and only floating-point")


def test_type_names_in_argument_errors_read_with_their_article() -> None:
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match=r"params\['w'\] is an int, not a tensor"):
        gs.debugger(w.sum(), params={"w": 3})
    with pytest.raises(TypeError, match=r"inputs= got an islice, which one run would use up"):
        gs.debugger(torch.nn.Linear(2, 1), inputs=itertools.islice([w], 1), loss=torch.sum)
