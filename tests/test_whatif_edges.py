"""What-if toggles at their edges: compiled models, a module under two grad modes, detached
dataclass outputs, apply on a failed run, ambiguous and aliased names, integer inputs, and what
a refused toggle says."""

from __future__ import annotations

import collections
import dataclasses
import time
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

import gradsight as gs
from gradsight._capture.detach import detach_output
from gradsight._capture.names import leaf_aliases, leaf_names_from_params, module_names, parameter_aliases
from gradsight._capture.outputs import flatten_tensors
from gradsight._capture.whatif import RefusedToggle, WhatIf
from gradsight.toggles import Toggles, make_toggles


def with_grad(graph: gs.Graph) -> list[str]:
    return sorted(n.leaf.name for n in graph.leaves if n.leaf is not None and n.leaf.name and n.executed)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


# -- torch.compile'd models: toggled re-runs run eagerly ----------------------------------------------


@pytest.fixture
def compiled() -> tuple[nn.Module, gs.Debugger, Any]:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = torch.compile(mlp(), backend="aot_eager")
    x = torch.randn(6, 4)
    model(x).pow(2).sum().backward()  # the user's step compiled it (one made inside gradsight's run is
    model.zero_grad()  # guarded on gradsight's global module hooks: the user's next step compiles it again)
    dbg = gs.debugger(model, inputs=x, loss=lambda o: o.pow(2).sum())
    yield model, dbg, counters
    dbg.close()
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "toggles",
    [{"no_grad": ["0"]}, {"inference_mode": ["0"]}, {"detach": ["0"]}, {"requires_grad": {"0": False}}],
)
def test_module_toggles_reach_inside_a_compiled_model(compiled: Any, toggles: dict[str, Any]) -> None:
    _model, dbg, counters = compiled
    assert "CompiledFunctionBackward#0" in dbg.graph  # the first run shows the compiled region
    graphs = counters["stats"]["unique_graphs"]
    graph = dbg.rerun(**toggles)
    assert with_grad(graph) == ["2.bias", "2.weight"]  # the toggle took effect: it was silently ignored
    assert counters["stats"]["unique_graphs"] == graphs  # and the user's model was not compiled again
    assert any("ran it eagerly" in note for note in graph.notes)  # why it shows more nodes than the first run
    assert not any("eagerly" in note for note in dbg.rerun().notes)  # no toggles: compiled, as the user runs it


def test_whole_step_and_requires_grad_toggles_do_not_recompile(compiled: Any) -> None:
    model, dbg, counters = compiled
    graphs = counters["stats"]["unique_graphs"]
    assert len(dbg.rerun(no_grad=True)) == 0
    assert with_grad(dbg.rerun(requires_grad={"0.weight": False})) == ["0.bias", "2.bias", "2.weight"]
    assert counters["stats"]["unique_graphs"] == graphs
    assert "CompiledFunctionBackward#0" in dbg.rerun()  # no toggles: the compiled model, as the user runs it
    model(torch.randn(6, 4)).sum().backward()  # the user's next step still uses the graph compiled first
    assert counters["stats"]["unique_graphs"] == graphs


def test_detaching_a_compiled_region_is_refused_with_what_to_do(compiled: Any) -> None:
    _model, dbg, _counters = compiled
    with pytest.raises(gs.ToggleError, match=r"torch\.compile'd region.*detach a module's output"):
        dbg.rerun(detach=["CompiledFunctionBackward#0"])
    assert dbg.status == "ready" and dbg.graph.run.index == 0


def test_eager_only_with_toggles() -> None:
    import torch._dynamo  # noqa: F401  # loaded, as once anything was compiled

    modules = {"": nn.Linear(2, 2)}
    assert not WhatIf(Toggles(), modules, {}).eager
    assert WhatIf(Toggles(no_grad=True), modules, {}).eager


# -- no_grad and inference_mode on the same module --------------------------------------------------


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)
        self.after_a: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ya = self.a(x)
        self.after_a.append((torch.is_grad_enabled(), torch.is_inference_mode_enabled()))
        return ya.detach().clone().sum() + self.b(x).sum()  # b does not depend on a


def test_no_grad_and_inference_mode_on_one_module_nest() -> None:
    model = Two()
    dbg = gs.debugger(model, inputs=torch.randn(3, 4))
    graph = dbg.rerun(no_grad=["a"], inference_mode=["a"])
    assert model.after_a[-1] == (True, False)  # both left when a returns: grad mode was left off before
    assert with_grad(graph) == ["b.bias", "b.weight"]
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


def test_an_interrupted_module_under_both_modes_leaves_neither_on() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    armed = [False]

    def interrupt(*_: Any) -> None:
        if armed[0]:
            raise KeyboardInterrupt

    model[0].register_forward_hook(interrupt)  # before gradsight's hooks: their exit hook is skipped
    dbg = gs.debugger(model, inputs=torch.randn(2, 4), loss=lambda out: out.sum())
    armed[0] = True
    with pytest.raises(KeyboardInterrupt):
        dbg.rerun(no_grad=["0"], inference_mode=["0"])
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()


# -- detach of a module that returns a dataclass -----------------------------------------------------


@dataclass
class Hidden:
    hidden: torch.Tensor


class Enc(nn.Module):
    def __init__(self, wrap: Any) -> None:
        super().__init__()
        self.lin, self.wrap = nn.Linear(4, 4), wrap

    def forward(self, x: torch.Tensor) -> Any:
        return self.wrap(self.lin(x))


class WithEnc(nn.Module):
    def __init__(self, wrap: Any, read: Any) -> None:
        super().__init__()
        self.enc, self.head, self.read = Enc(wrap), nn.Linear(4, 1), read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.read(self.enc(x)))


def test_detach_of_a_module_returning_a_dataclass_cuts_it() -> None:
    model = WithEnc(Hidden, lambda out: out.hidden)
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda o: o.sum())
    assert with_grad(dbg.rerun(detach=["enc"])) == ["head.bias", "head.weight"]  # enc's were still there


class Opaque:
    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden


def test_detach_of_an_output_it_cannot_rebuild_says_so() -> None:
    model = WithEnc(Opaque, lambda out: out.hidden)
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda o: o.sum())
    with pytest.raises(gs.RerunError, match=r"could not detach the output of module enc \(Enc\).*inside an Opaque"):
        dbg.rerun(detach=["enc"])


@dataclass(frozen=True)
class Frozen:
    hidden: torch.Tensor
    n: int = 3


@dataclass
class Derived:
    hidden: torch.Tensor
    double: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.double = self.hidden * 2


@dataclass
class NeedsScale:
    hidden: torch.Tensor
    scale: InitVar[float]

    def __post_init__(self, scale: float) -> None:
        self.factor = scale


class OutputDict(collections.OrderedDict):  # what Hugging Face's ModelOutput does, unregistered
    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if getattr(self, f.name) is not None:
                self[f.name] = getattr(self, f.name)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)


@dataclass
class ModelOutput(OutputDict):
    last: torch.Tensor | None = None
    states: tuple[torch.Tensor, ...] | None = None


@pytest.mark.parametrize(
    "make",
    [
        Frozen,
        Derived,
        lambda h: NeedsScale(h, 2.0),
        lambda h: ModelOutput(last=h, states=(h, h)),
        lambda h: (Frozen(h), {"a": [Derived(h)]}),
        lambda h: collections.UserDict(a=h),
    ],
    ids=["frozen", "init_false", "initvar", "model_output", "nested", "userdict"],
)
def test_detached_outputs_keep_their_type(make: Any) -> None:
    x = torch.randn(2, requires_grad=True)
    output = make(x * 2)
    out = detach_output(nn.Identity(), (), output, path="enc")
    assert type(out) is type(output)
    assert flatten_tensors(out) and not any(t.requires_grad for t in flatten_tensors(out))
    assert all(t.requires_grad for t in flatten_tensors(output))  # the module's own output is untouched
    if isinstance(out, NeedsScale):
        assert out.factor == 2.0
    if isinstance(out, ModelOutput):
        assert out["last"] is out.last and not out["states"][0].requires_grad


# -- apply=True keeps nothing when the run fails -------------------------------------------------------


class Picky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.b.weight.requires_grad:
            raise RuntimeError("b frozen")
        return self.b(self.a(x))


def test_apply_on_a_failed_rerun_keeps_nothing() -> None:
    model = Picky()
    dbg = gs.debugger(model, inputs=torch.randn(3, 4), loss=lambda o: o.sum())
    with pytest.raises(gs.RerunError, match="b frozen"):
        dbg.rerun(requires_grad={"b": False}, apply=True)
    assert model.b.weight.requires_grad and model.b.bias.requires_grad
    assert all(c.requires_grad for c in dbg.graph.controls.leaves if c.name.startswith("b."))


def test_whatif_applied_restores_and_keep_skips_a_failed_run() -> None:
    lin = nn.Linear(2, 2)
    whatif = WhatIf(Toggles(requires_grad={"weight": False}, apply=True), {"": lin}, {"weight": lin.weight})
    with whatif.applied():
        assert not lin.weight.requires_grad
    assert lin.weight.requires_grad  # applied() always puts back; keep() sets it again on success
    whatif.discard()
    whatif.keep()
    assert lin.weight.requires_grad
    with pytest.raises(ZeroDivisionError), whatif.applied(), whatif.forward():
        raise ZeroDivisionError
    assert lin.weight.requires_grad


# -- names: ambiguous, aliased, typo'd, computed --------------------------------------------------------


class InputNamed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.input, self.out = nn.Linear(4, 4), nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.input(x))


def test_a_leaf_and_a_module_of_one_name_are_refused_as_ambiguous() -> None:
    dbg = gs.debugger(InputNamed(), inputs=torch.randn(3, 4, requires_grad=True), loss=lambda o: o.sum())
    with pytest.raises(gs.ToggleError, match=r"'input' is ambiguous.*'input.weight', 'input.bias'.*input\[0\]"):
        dbg.rerun(requires_grad={"input": False})
    assert with_grad(dbg.rerun(requires_grad={"input.weight": False, "input.bias": False})) == [
        "input",
        "out.bias",
        "out.weight",
    ]


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.mid = nn.Embedding(10, 4), nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mid(self.emb(i))))


def test_every_name_of_a_tied_parameter_is_a_toggle() -> None:
    model = Tied()
    aliases = parameter_aliases(model)
    assert aliases == {"head.weight": "emb.weight"}
    assert parameter_aliases(torch.compile(model)) == aliases  # compiled: the names the user wrote
    names: dict[str, Any] = {"leaves": ["emb.weight", "mid.weight", "mid.bias"], "modules": ["emb", "mid", "head"]}
    names["aliases"] = aliases
    toggles = make_toggles(requires_grad={"head.weight": False}, **names)
    assert toggles.requires_grad == {"emb.weight": False}  # kept under the name the graph shows
    with pytest.raises(gs.ToggleError, match=r"'emb\.weight' and 'head\.weight' are one tensor"):
        make_toggles(requires_grad={"emb.weight": True, "head.weight": False}, **names)
    # WhatIf acts on the same tensor under either name (toggles made without the aliases too)
    modules = dict(model.named_modules())
    flips = WhatIf(Toggles(requires_grad={"head.weight": False}), modules, {"emb.weight": model.emb.weight}).flips()
    assert len(flips) == 1 and flips[0][0] is model.emb.weight and flips[0][1] is False


def test_a_module_registered_twice_gives_its_parameters_two_names() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.c = nn.Linear(2, 2), nn.Linear(2, 2)
            self.b = self.a
            self.c.weight = self.a.weight

    model = Shared()
    expected = {"b.weight": "a.weight", "b.bias": "a.bias", "c.weight": "a.weight"}
    assert leaf_aliases(module_names(model), leaf_names_from_params(model)) == expected
    assert parameter_aliases(model) == expected
    modules = dict(module_names(model))  # "b" is listed under its first path only
    whatif = WhatIf(Toggles(requires_grad={"b.bias": False}), modules, {"a.bias": model.a.bias})
    assert [(t is model.a.bias, v) for t, v in whatif.flips()] == [(True, False)]


def test_typos_get_close_matches_first_then_a_count() -> None:
    leaves = [f"{i}.{p}" for i in range(40) for p in ("weight", "bias")]
    modules = [str(i) for i in range(40)]
    with pytest.raises(gs.ToggleError) as raised:
        make_toggles(requires_grad={"39.wieght": False}, leaves=leaves, modules=modules)
    text = str(raised.value)
    assert "did you mean '39.weight'" in text and "120 names are known" in text and "'0.weight'" not in text
    with pytest.raises(gs.ToggleError, match=r"no_grad: no module named 'layer9'; known: '0', '1', .*\(40 in all"):
        make_toggles(no_grad=["layer9"], modules=modules)


def test_detach_errors_name_what_detach_takes_in_order() -> None:
    nodes = ["b/AddmmBackward0#0", "a/AddmmBackward0#0"]
    with pytest.raises(gs.ToggleError, match=r"detach: no module or node id named 'zz'; known: '1', '0', 'b/.*'a/"):
        make_toggles(detach=["zz"], modules=["1", "0"], nodes=nodes)
    with pytest.raises(gs.ToggleError, match="detach: no module named"):
        make_toggles(detach=["zz"], modules=["1", "0"])
    with pytest.raises(gs.ToggleError, match=r"detach must be a list of names.*got True \(to cut the whole step"):
        make_toggles(detach=True, modules=["0"])
    assert make_toggles(detach=False).detach == () and make_toggles(detach=None).detach == ()
    assert make_toggles(no_grad={"1", "0"}, modules=["0", "1"]).no_grad == ("0", "1")  # a set: sorted


@pytest.mark.parametrize(
    ("leaves", "source"),
    [
        (["0.parametrizations.weight.original", "0.bias"], "'0.parametrizations.weight.original'; toggle that"),
        (["0.parametrizations.weight.original0", "0.parametrizations.weight.original1"], "original0' and '0.par"),
        (["0.weight_g", "0.weight_v"], "'0.weight_g' and '0.weight_v'; toggle those"),
        (["0.weight_orig"], "'0.weight_orig'"),
    ],
)
def test_a_parametrized_weight_says_what_it_is_computed_from(leaves: list[str], source: str) -> None:
    with pytest.raises(gs.ToggleError, match=r"'0\.weight' is no leaf: a parametrization") as raised:
        make_toggles(requires_grad={"0.weight": False}, leaves=[*leaves, *leaves], modules=["0"])
    assert source in str(raised.value).replace(" in every forward", "")


def test_name_checks_are_linear() -> None:
    leaves = [f"blocks.{i}.w" for i in range(20000)]
    modules = [f"blocks.{i}" for i in range(20000)]
    start = time.perf_counter()
    make_toggles(requires_grad=dict.fromkeys(leaves, False), detach=modules, leaves=leaves, modules=modules)
    assert time.perf_counter() - start < 0.5  # 1.7 s with list lookups


# -- requires_grad on an integer tensor --------------------------------------------------------------


def test_requires_grad_on_an_integer_input_is_refused_up_front() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 1))
    ids = torch.tensor([1, 2, 3])
    dbg = gs.debugger(model, inputs=ids, loss=lambda o: o.sum())
    with pytest.raises(RefusedToggle, match=r"input holds int64 values.*floating-point or complex"):
        dbg.rerun(requires_grad={"input": True})
    assert dbg.status == "ready" and dbg.error == "" and not ids.requires_grad
    assert isinstance(RefusedToggle("x"), gs.ToggleError) and isinstance(RefusedToggle("x"), gs.RerunError)
    # why() agrees: no advice to call requires_grad_() on it, which torch refuses for integers
    why = dbg.why("input")
    assert why.reason == "requires_grad_false" and "holds int64 values" in why.message
    assert "requires_grad_()" not in why.message and "Only floating-point and complex" in why.message


def test_a_module_set_to_require_grad_skips_its_integer_parameters() -> None:
    model = nn.Linear(2, 2)
    model.steps = nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)
    whatif = WhatIf(Toggles(requires_grad={"": True}), {"": model}, {})
    assert {id(t) for t, _ in whatif.flips()} == {id(model.weight), id(model.bias)}
