"""What ``gradsight.debugger(t)`` says of an integer or bool tensor: its dtype with the article it is
read with ("an int64 tensor", "a uint8 tensor"), not "a int64"."""

from __future__ import annotations

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
