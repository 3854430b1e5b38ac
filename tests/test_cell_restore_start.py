"""What a ``%%gradsight`` cell's re-runs start from and leave (cell_start.FirstState): tensors the cell
edits in place, optimizers it steps, generators it draws from, iterators it takes a batch from."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell

import gradsight as gs


def grads(graph: gs.Graph) -> dict[str, float | None]:
    return {n.leaf.name: n.grad_in[0].norm for n in graph.leaves if n.leaf is not None and n.leaf.name}


@pytest.fixture
def small_budget() -> Iterator[None]:
    budget = gs.options.memory_budget
    gs.options.memory_budget = 64  # smaller than the tensors below: nothing is copied
    try:
        yield
    finally:
        gs.options.memory_budget = budget


EDITS = (
    "%%gradsight\nimages /= 255\nmask[0] = 0\nbatch['x'].clamp_(max=0.5)\n"
    "loss = (model(images) * mask).pow(2).sum() + model(batch['x']).sum()\nloss.backward()"
)


def _edits_namespace(shell: InteractiveShell) -> None:
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nimages = torch.full((8, 4), 255.0)\nmask = torch.ones(2)\n"
        "batch = {'x': torch.rand(8, 4)}",
        store_history=False,
    )


def test_a_rerun_starts_from_the_data_the_first_run_started_from_and_leaves_it_as_it_was(
    shell: InteractiveShell,
) -> None:
    _edits_namespace(shell)
    dbg = shell.run_cell(EDITS, store_history=False).result
    ns = shell.user_ns
    images, mask, x = ns["images"], ns["mask"], ns["batch"]["x"]
    after = [t.clone() for t in (images, mask, x)]
    versions = [t._version for t in (images, mask, x)]
    assert float(images.max()) == 1.0 and float(mask[0]) == 0.0  # the first run edited them, as a plain cell would
    assert dbg.graph.run.kept_bytes >= 8 * 4 * 4 * 2 + 2 * 4  # the copies count in the budget
    first = grads(dbg.graph)
    w = torch.ones(4, requires_grad=True)
    pending = (images @ w).sum() + (x @ w).sum()  # the user's graph saves images and x as they are now
    for _ in range(2):
        graph = dbg.rerun(requires_grad={"model.bias": False})
        assert grads(graph)["model.weight"] == pytest.approx(first["model.weight"])  # the same data as the first run
        assert not [n for n in graph.notes if "in place" in n]
        assert all(torch.equal(t, a) for t, a in zip((images, mask, x), after, strict=True))
        assert [t._version for t in (images, mask, x)] == versions
    assert grads(dbg.rerun())["model.bias"] == pytest.approx(first["model.bias"])
    pending.backward()  # raised "modified by an inplace operation" while the re-run left the counters moved
    assert w.grad is not None


def test_past_the_budget_a_rerun_says_it_started_from_the_edited_data_and_still_puts_it_back(
    shell: InteractiveShell, small_budget: None
) -> None:
    _edits_namespace(shell)
    dbg = shell.run_cell(EDITS, store_history=False).result
    images = shell.user_ns["images"]
    after, version = images.clone(), images._version
    graph = dbg.rerun()
    (note,) = [n for n in graph.notes if "in place" in n]
    assert "images" in note and "batch['x']" in note and "memory budget" in note
    assert "mask" not in note  # 8 bytes: within the budget, copied
    assert torch.equal(images, after) and images._version == version


def test_a_tensor_the_cell_makes_before_editing_it_is_not_copied(shell: InteractiveShell) -> None:
    # nor a function's own parameter that shares a name with a tensor of the user's
    shell.run_cell("x = torch.ones(1000)\nw = torch.ones(3, requires_grad=True)", store_history=False)
    code = "def scale(x):\n    x *= 2\n    return x\nx = torch.zeros(3)\nx += 1\nloss = (w * scale(x)).sum()"
    dbg = shell.run_cell(f"%%gradsight\n{code}", store_history=False).result
    assert dbg._target.first_state.kept_bytes == 0
    assert not [n for n in dbg.rerun().notes if "in place" in n]
    assert torch.equal(shell.user_ns["x"], torch.full((3,), 2.0))


STEP = (
    "%%gradsight\nbatch = torch.randn(16, 10)\nloss = (model(batch) - 1).pow(2).sum()\nopt.zero_grad()\n"
    "loss.backward()\nopt.step()"
)


@pytest.mark.parametrize("optimizer", ["SGD(model.parameters(), lr=0.1)", "Adam(model.parameters(), lr=0.1)"])
def test_a_cell_that_steps_its_optimizer_reruns_on_the_parameters_of_the_run_shown(
    shell: InteractiveShell, optimizer: str
) -> None:
    shell.run_cell(f"torch.manual_seed(0)\nmodel = nn.Linear(10, 2)\nopt = torch.optim.{optimizer}")
    dbg = shell.run_cell(STEP, store_history=False).result
    model, opt = shell.user_ns["model"], shell.user_ns["opt"]
    first = grads(dbg.graph)
    weight, versions = model.weight.detach().clone(), (model.weight._version, model.bias._version)
    state = {k: v.clone() for k, v in opt.state[model.weight].items()}
    pending = model(torch.randn(4, 10, requires_grad=True)).sum()  # saves the weight at its version now
    graph = dbg.rerun()
    assert grads(graph) == pytest.approx(first)  # not the gradients of the stepped parameters
    assert not [n for n in graph.notes if "steps" in n]
    assert torch.equal(model.weight, weight) and (model.weight._version, model.bias._version) == versions
    assert all(torch.equal(opt.state[model.weight][k], v) for k, v in state.items())
    pending.backward()  # raised "modified by an inplace operation" while the step's counters stayed moved


def test_past_the_budget_a_rerun_says_it_started_from_the_stepped_parameters(
    shell: InteractiveShell, small_budget: None
) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(10, 2)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)")
    dbg = shell.run_cell(STEP, store_history=False).result
    weight = shell.user_ns["model"].weight.detach().clone()
    graph = dbg.rerun()
    (note,) = [n for n in graph.notes if "steps" in n]
    assert "opt" in note and "memory budget" in note
    assert not [n for n in graph.notes if "edits" in n]  # the parameters are the step's, said once
    assert torch.equal(shell.user_ns["model"].weight, weight)


def test_optimizer_copies_take_at_most_a_quarter_of_the_budget(shell: InteractiveShell) -> None:
    from gradsight._capture.cell_start import OPTIMIZER_SHARE

    budget = gs.options.memory_budget
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(10, 2)\nopt = torch.optim.SGD(model.parameters(), lr=0.1)")
    params = sum(p.numel() * p.element_size() for p in shell.user_ns["model"].parameters())  # 88 bytes
    gs.options.memory_budget = params * OPTIMIZER_SHARE - 8  # they fit the budget, not a quarter of it
    try:
        dbg = shell.run_cell(STEP, store_history=False).result
    finally:
        gs.options.memory_budget = budget
    (note,) = [n for n in dbg.rerun().notes if "steps" in n]
    assert "quarter of the memory budget" in note


GENERATORS = {
    "named": ("g = torch.Generator().manual_seed(5)", "torch.randn(3, 4, generator=g)", lambda ns: ns["g"]),
    "in a helper": (
        "g2 = torch.Generator().manual_seed(5)\ndef draw():\n    return torch.randn(3, 4, generator=g2)",
        "draw()",
        lambda ns: ns["g2"],
    ),
    "one level in": (
        "class Data:\n    pass\ndata = Data()\ndata.rng = torch.Generator().manual_seed(5)",
        "torch.randn(3, 4, generator=data.rng)",
        lambda ns: ns["data"].rng,
    ),
    "a data loader's sampler": (
        "from torch.utils.data import DataLoader, RandomSampler, TensorDataset\n"
        "ds = TensorDataset(torch.randn(64, 4))\ng3 = torch.Generator().manual_seed(1)\n"
        "loader = DataLoader(ds, batch_size=3, sampler=RandomSampler(ds, generator=g3))",
        "next(iter(loader))[0]",
        lambda ns: ns["g3"],
    ),
    "a dataset's own": (
        "class Noisy(torch.utils.data.Dataset):\n    def __init__(self):\n"
        "        self.g = torch.Generator().manual_seed(7)\n"
        "    def __len__(self):\n        return 64\n    def __getitem__(self, i):\n"
        "        return torch.randn(4, generator=self.g)\nloader2 = torch.utils.data.DataLoader(Noisy(), batch_size=3)",
        "next(iter(loader2))",
        lambda ns: ns["loader2"].dataset.g,
    ),
    "numpy": (
        "import numpy as np\nrng = np.random.default_rng(5)",
        "torch.from_numpy(rng.standard_normal((3, 4))).float()",
        lambda ns: ns["rng"].bit_generator,
    ),
}


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_a_rerun_draws_what_the_first_run_drew_from_a_generator_of_yours_and_leaves_it(
    shell: InteractiveShell, kind: str
) -> None:
    setup, draw, generator = GENERATORS[kind]
    shell.run_cell(f"torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\n{setup}", store_history=False)
    dbg = shell.run_cell(f"%%gradsight\nx = {draw}\nloss = model(x).pow(2).sum()\nloss.backward()").result
    gen = generator(shell.user_ns)

    def state() -> object:
        return gen.get_state().clone() if isinstance(gen, torch.Generator) else gen.state

    before, first = state(), grads(dbg.graph)
    assert grads(dbg.rerun()) == pytest.approx(first)  # drew the first run's numbers
    now = state()
    assert torch.equal(now, before) if isinstance(now, torch.Tensor) else now == before


def test_a_rerun_of_a_cell_that_takes_next_from_your_iterator_says_so(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(4, 1)\nit = iter(torch.randn(5, 2, 4))")
    dbg = shell.run_cell("%%gradsight\nx = next(it)\nloss = model(x).pow(2).sum()\nloss.backward()").result
    assert not [n for n in dbg.graph.notes if "next(" in n]
    (note,) = [n for n in dbg.rerun().notes if "next(" in n]
    assert "next(it)" in note and "another batch" in note
    fresh = shell.run_cell("%%gradsight\nx = next(iter(torch.ones(2, 4)))\nloss = model(x).sum()").result
    assert not [n for n in fresh.rerun().notes if "next(" in n]  # a new iterator each run: the same batch


def test_a_manual_sgd_step_under_no_grad_reruns_on_the_first_weights(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nw = torch.randn(4, requires_grad=True)\nx = torch.randn(8, 4)")
    code = "loss = (x @ w).pow(2).sum()\nloss.backward()\nwith torch.no_grad():\n    w -= 0.1 * w.grad\n"
    code += "    w.grad = None"
    dbg = shell.run_cell(f"%%gradsight\n{code}", store_history=False).result
    w = shell.user_ns["w"]
    after, version, first = w.detach().clone(), w._version, grads(dbg.graph)
    assert grads(dbg.rerun()) == pytest.approx(first)
    assert torch.equal(w, after) and w._version == version


def test_a_why_trace_through_the_cell_leaves_the_data_it_edits_as_it_was(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nmodel = nn.Linear(4, 2)\nimages = torch.full((8, 4), 255.0)")
    code = "images /= 255\nwith torch.no_grad():\n    h = model(images)\nloss = h.sum()"
    dbg = shell.run_cell(f"%%gradsight\n{code}", store_history=False).result
    images = shell.user_ns["images"]
    version = images._version
    assert dbg.why("model.weight").reason  # re-runs the cell under the taint trace
    assert float(images.max()) == 1.0 and images._version == version
