"""gradsight.debugger(): what it accepts, and how it explains what it cannot show."""

from __future__ import annotations

import pytest
import torch

import gradsight as gs
from tests.zoo import ZOO


def test_debugger_of_loss_names_parameters() -> None:
    case = ZOO["seed_tiny_model"]()
    dbg = gs.debugger(case.roots[0], params=case.params)
    assert isinstance(dbg, gs.Debugger)
    names = sorted(n.leaf.name for n in dbg.graph.leaves if n.leaf and n.leaf.name)
    assert names == ["layer1.bias", "layer1.weight", "layer2.bias", "layer2.weight"]


def test_params_as_dict_like_torchviz() -> None:
    case = ZOO["seed_tiny_model"]()
    dbg = gs.debugger(case.roots[0], params=dict(case.keep.named_parameters()))
    assert dbg.graph.find("layer2.bias")


def test_list_of_tensors() -> None:
    dbg = gs.debugger(ZOO["two_roots"]().roots)
    assert len(dbg.graph.roots) == 2


@pytest.mark.parametrize("bad", [3, "loss", None, [], [torch.ones(1), 2], {"a": torch.ones(1)}])
def test_non_tensors_get_a_type_error_saying_what_is_accepted(bad: object) -> None:
    with pytest.raises(TypeError, match="takes a tensor"):
        gs.debugger(bad)


def test_run_arguments_with_a_tensor_are_explained() -> None:
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match="only apply when gradsight runs a model"):
        gs.debugger((x * 2).sum(), loss=lambda out: out)


def test_loss_must_be_a_function() -> None:
    with pytest.raises(TypeError, match="loss must be a function"):
        gs.debugger(torch.nn.Linear(2, 2), inputs=torch.ones(1, 2), loss=3)


def test_bad_memory_budget_is_explained() -> None:
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="memory_budget"):
        gs.debugger((x * 2).sum(), memory_budget=-1)


def test_bad_params_are_explained() -> None:
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match=r"nn\.Module or a dict"):
        gs.debugger((x * 2).sum(), params=[x])
    with pytest.raises(TypeError, match="not a tensor"):
        gs.debugger((x * 2).sum(), params={"x": 3})


def test_leaf_created_by_user_is_explained() -> None:
    x = torch.ones(3, requires_grad=True)
    dbg = gs.debugger(x)
    assert len(dbg.graph) == 0
    assert dbg.graph.message is not None and "leaf tensor you created" in dbg.graph.message
    assert "Operations on it will build a graph" in dbg.graph.message


def test_requires_grad_false_is_explained() -> None:
    dbg = gs.debugger(torch.ones(3) * 2)
    assert dbg.graph.message is not None and "requires_grad=False" in dbg.graph.message


def test_no_grad_result_is_explained() -> None:
    a = torch.ones(2, 3, requires_grad=True)
    with torch.no_grad():
        c = a + a
    msg = gs.debugger(c).graph.message
    assert msg is not None and "no_grad" in msg


def test_inference_mode_result_is_explained() -> None:
    a = torch.ones(2, requires_grad=True)
    with torch.inference_mode():
        c = a * 2
    msg = gs.debugger(c).graph.message
    assert msg is not None and "inference_mode" in msg


def test_mixed_roots_keep_the_graph_and_note_the_rest() -> None:
    x = torch.ones(2, requires_grad=True)
    dbg = gs.debugger([(x * 2).sum(), torch.zeros(2)])
    assert len(dbg.graph.roots) == 1
    assert any("tensor 1 has requires_grad=False" in n for n in dbg.graph.notes)


def test_public_names() -> None:
    for name in ["debugger", "Debugger", "Graph", "Node", "TensorSummary", "LeafInfo"]:
        assert hasattr(gs, name)


@pytest.mark.parametrize(
    ("name", "value"),
    [("memory_budget", "1GB"), ("memory_budget", -5), ("keep_all_below", 1.5), ("live_share", 0), ("source_lines", 1)],
)
def test_bad_global_options_fail_when_set(name: str, value: object) -> None:
    before = getattr(gs.options, name)
    with pytest.raises(ValueError, match=name):
        setattr(gs.options, name, value)
    assert getattr(gs.options, name) == before


def test_an_unknown_option_lists_the_known_ones() -> None:
    with pytest.raises(AttributeError, match="memory_budget"):
        gs.options.memory_limit = 1  # type: ignore[attr-defined]


def test_a_closed_debugger_says_so() -> None:
    x = torch.randn(3, requires_grad=True)
    dbg = gs.debugger(lambda: (x * 2).sum())
    dbg.close()
    dbg.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        dbg.inspect("leaf:x")
    with pytest.raises(RuntimeError, match="closed"):
        dbg.rerun()
    assert dbg.graph.find("MulBackward0")  # the last graph stays readable


def test_a_debugger_is_not_pickled_but_its_graph_is() -> None:
    import pickle

    x = torch.randn(3, requires_grad=True)
    dbg = gs.debugger(lambda: (x * 2).sum())
    with pytest.raises(TypeError, match=r"pickle dbg\.graph instead"):
        pickle.dumps(dbg)
    assert pickle.loads(pickle.dumps(dbg.graph)) == dbg.graph


def test_values_of_a_tensor_the_node_does_not_have() -> None:
    from gradsight._capture.inspect import values_of

    x = torch.randn(3, requires_grad=True)
    dbg = gs.debugger(lambda: (x * 2).sum())
    node = dbg.graph.find("MulBackward0")[0].id
    with pytest.raises(LookupError, match="has no tensor 'saved:_saved_nope'; its tensors: "):
        values_of(dbg._captured, node, "saved:_saved_nope", [])


def test_a_closed_debugger_is_freed_with_what_it_kept() -> None:
    import gc
    import weakref

    model = torch.nn.Linear(4, 1)
    batch = torch.randn(8, 4)
    dbg = gs.debugger(model, inputs=batch, loss=lambda out: out.sum())
    ref = weakref.ref(dbg)
    dbg.close()
    del dbg
    gc.collect()
    assert ref() is None  # anywidget held every instance whose _esm was a file path


def test_params_names_leaves_only_and_every_name_is_text() -> None:
    w = torch.randn(3, requires_grad=True)
    h = w * 2
    loss = (h * 3).sum()
    with pytest.raises(ValueError, match=r"params\['h'\] is computed \(grad_fn=MulBackward0\), not a leaf"):
        gs.debugger(loss, params={"w": w, "h": h})
    with pytest.raises(ValueError, match="params has an empty name"):
        gs.debugger(loss, params={"": w})


def test_argument_checks_match_the_options() -> None:
    import numpy as np

    lin = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="source_lines must be True or False, not 'no'"):
        gs.debugger(lin, inputs=torch.randn(3, 2), loss=lambda out: out.sum(), source_lines="no")  # type: ignore[arg-type]
    dbg = gs.debugger(lin, inputs=torch.randn(3, 2), loss=lambda out: out.sum(), memory_budget=np.int64(1000))
    assert dbg.graph.run.budget_bytes == 1000
    with pytest.raises(TypeError, match=r"find\(\) takes the text to look for as a str"):
        dbg.graph.find(None)  # type: ignore[arg-type]


def test_a_sparse_tensors_kept_bytes_count_its_indices() -> None:
    i = torch.randint(0, 1000, (2, 5000))
    s = torch.sparse_coo_tensor(i, torch.randn(5000), (1000, 1000), check_invariants=True).coalesce().requires_grad_()
    dbg = gs.debugger(lambda: (s.values() * 2).sum(), memory_budget=10_000_000)
    held = s._values().nbytes + s._indices().nbytes
    assert dbg.graph.run.kept_bytes >= held  # the values alone are a fifth of it
    small = gs.debugger(lambda: (s.values() * 2).sum(), memory_budget=held - 1)
    assert small.graph.run.dropped >= 1


def test_a_parameter_given_alone_is_called_a_parameter_with_code_that_runs() -> None:
    layer = torch.nn.Linear(3, 2)
    dbg = gs.debugger(layer.weight)
    message = dbg.graph.message or ""
    assert "model parameter" in message and "you created" not in message
    example = message.rsplit("gradsight.debugger(", 1)[1]
    assert example.startswith("(x * 2).sum())"), message  # "the tensor" is no variable name
