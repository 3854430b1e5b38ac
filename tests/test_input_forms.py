"""The forms of ``inputs=`` a runnable debugger takes: dict-like batches are keyword arguments, a
named tuple (an LSTM's PackedSequence) is one argument."""

from __future__ import annotations

from collections import UserDict

import torch
from IPython.core.interactiveshell import InteractiveShell
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import gradsight as gs


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (self.embed(input_ids) * attention_mask[..., None]).sum()


def test_a_dict_like_batch_is_keyword_arguments() -> None:
    # Hugging Face's BatchEncoding is a UserDict: a Mapping, not a dict
    torch.manual_seed(0)
    model = Encoder()
    batch = UserDict({"input_ids": torch.randn(2, 3, 4, requires_grad=True), "attention_mask": torch.ones(2, 3)})
    dbg = gs.debugger(model, inputs=batch)
    assert dbg.status == "ready", dbg.error
    leaves = {n.leaf.name for n in dbg.graph.nodes if n.leaf is not None}
    assert "input_ids" in leaves and "embed.weight" in leaves
    dbg.close()


class Packed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 5)

    def forward(self, packed: PackedSequence) -> torch.Tensor:
        out, _ = self.lstm(packed)
        return out.data.pow(2).sum()


def test_a_packed_sequence_is_one_argument() -> None:
    torch.manual_seed(0)
    model = Packed()
    packed = pack_padded_sequence(torch.randn(4, 2, 3), torch.tensor([4, 2]))
    plain = torch.autograd.grad(model(packed), list(model.parameters()))
    dbg = gs.debugger(model, inputs=packed)
    assert dbg.status == "ready", dbg.error
    got = {n.leaf.name: n for n in dbg.graph.nodes if n.leaf is not None}
    for (name, _), expected in zip(model.named_parameters(), plain, strict=True):
        node = got[name]
        assert node.grad_norm is not None
        assert abs(node.grad_norm - float(expected.norm())) <= 1e-6 * max(1.0, float(expected.norm()))
    dbg.close()


def test_a_tensordict_like_mapping_is_one_argument() -> None:
    # tensordict's TensorDict is a MutableMapping that its modules take whole: model(td), not model(**td)
    td_type = type("TensorDict", (UserDict,), {"__module__": "tensordict._td"})
    seen: list[object] = []

    class TakesWhole(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, td: UserDict) -> torch.Tensor:
            seen.append(td)
            return self.lin(td["x"]).sum()

    batch = td_type({"x": torch.randn(2, 4)})
    dbg = gs.debugger(TakesWhole(), inputs=batch)
    assert dbg.status == "ready", dbg.error
    assert seen and seen[-1] is batch
    dbg.close()


def test_leaf_controls_carry_each_leafs_dtype_so_the_view_offers_no_box_for_integer_inputs(
    shell: InteractiveShell,
) -> None:
    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 4)
    ids = torch.tensor([1, 2, 3])
    dbg = gs.debugger(emb, inputs=ids, loss=lambda out: out.sum())
    dtypes = {leaf.name: leaf.dtype for leaf in dbg.graph.controls.leaves}
    assert dtypes["weight"] == "float32" and dtypes["input"] == "int64", dtypes

    shell.run_cell("idx = torch.tensor([0, 2])\nw = torch.randn(3, requires_grad=True)", store_history=False)
    cell = shell.run_cell("%%gradsight\nloss = w[idx].sum()\nloss.backward()", store_history=False).result
    dtypes = {leaf.name: leaf.dtype for leaf in cell.graph.controls.leaves}
    assert dtypes["idx"] == "int64" and dtypes["w"] == "float32", dtypes
