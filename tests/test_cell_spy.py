"""What a %%gradsight cell watches, and only that: the backward calls of the cell's own thread that
reach its tensors (not the last few calls of any thread), a ``grad`` the cell imported that does
nothing once the cell ended, no forward tracking where dynamo could see it (but a comment or
``re.compile`` is no ``torch.compile``), ``options.source_lines``, and a KeyboardInterrupt shown like
any other error of a cell."""

from __future__ import annotations

import ast
import re
import sys
from typing import Any

import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from torch.overrides import TorchFunctionMode

import gradsight as gs
from gradsight._capture import cell as cell_mod
from gradsight._capture import cell_forward, hooks
from gradsight._capture import spy as spy_mod
from gradsight.graph import TensorSummary, Unavailable
from tests.cells import TINY_MODEL, cell, shown


@pytest.fixture
def no_compiled_code() -> None:
    """Forget what an earlier test compiled: a cell is not watched while dynamo has compiled code."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()


def assert_loss_shown(dbg: Any, shell: InteractiveShell) -> None:
    graph = dbg.graph
    assert all(n.executed for n in graph.nodes), [(n.id, n.executed) for n in graph.nodes]
    saved = [v for n in graph.nodes for k, v in n.saved.items() if k != "_saved_self_sym_sizes"]
    assert saved and all(isinstance(v, TensorSummary) for v in saved), saved
    assert not any("freed" in n for n in graph.notes), graph.notes
    assert not graph.missing and dbg.why("w").reason != "not_on_path"
    w = shell.user_ns["w"]
    assert graph.node("leaf:w").grad_norm == pytest.approx(float(w.grad.norm()), rel=1e-6)


# -- 1. the backward calls that reach the cell's tensors, on the cell's thread ---------------------------


def test_a_loss_backward_followed_by_scratch_backward_calls_still_shows_the_loss(shell: InteractiveShell) -> None:
    shell.run_cell("torch.manual_seed(0)\nw = torch.randn(3, requires_grad=True)", store_history=True)
    dbg = cell(
        shell,
        "loss = (w.sin() * w).sum()\nloss.backward()\n"
        "for _ in range(spy_calls):\n    s = torch.ones(2, requires_grad=True)\n    (s * 3).sum().backward()\n"
        "del s\n".replace("spy_calls", str(spy_mod.KEEP_CALLS + 1)),
    )
    assert_loss_shown(dbg, shell)


def test_backward_calls_of_another_thread_are_not_the_cells(shell: InteractiveShell) -> None:
    shell.run_cell("import threading\ntorch.manual_seed(0)\nw = torch.randn(3, requires_grad=True)", False)
    dbg = cell(
        shell,
        "def work():\n    a = torch.ones(3, requires_grad=True)\n    for _ in range(50):\n"
        "        (a * 2).sum().backward()\n"
        "th = threading.Thread(target=work); th.start(); th.join()\n"
        "loss = (w.sin() * w).sum()\nt2 = threading.Thread(target=work)\nloss.backward(); t2.start(); t2.join()\n",
    )
    assert_loss_shown(dbg, shell)
    assert not any(".grad" in n for n in dbg.graph.notes), dbg.graph.notes  # the thread's leaf is not counted


def test_the_spy_keeps_a_bounded_few_calls_the_latest_and_those_the_cells_tensors_reach(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    spies: list[Any] = []
    init = spy_mod.BackwardSpy.__init__

    def remember(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        spies.append(self)

    monkeypatch.setattr(spy_mod.BackwardSpy, "__init__", remember)
    shell.run_cell("w = torch.ones(3, requires_grad=True)", store_history=False)
    body = "".join(f"l{i} = (w * {i}).sum()\nl{i}.backward()\n" for i in range(8))  # 8 losses, each bound
    dbg = cell(shell, body + "for _ in range(30):\n    (w * 2).sum().backward()\n")
    assert len(spies[-1]._calls) <= spy_mod.KEEP_CALLS + spy_mod.KEEP_HELD
    assert [n.executed for n in dbg.graph.find("SumBackward0")].count(True) == spy_mod.KEEP_HELD  # the last held
    # a training loop: each step rebinds its loss, so older steps are not held
    shell.run_cell(TINY_MODEL + "opt = torch.optim.SGD(model.parameters(), lr=0.01)", store_history=False)
    dbg = cell(shell, "for step in range(20):\n    opt.zero_grad()\n    loss = model(x).pow(2).sum()\n"
                      "    loss.backward()\n    opt.step()\n")  # fmt: skip
    assert len(spies[-1]._calls) == spy_mod.KEEP_CALLS
    assert all(n.executed for n in dbg.graph.nodes)


# -- 2. a grad the cell imported does nothing once the cell ended ---------------------------------------------


def test_a_grad_imported_in_the_cell_is_torchs_own_after_it_and_keeps_nothing(shell: InteractiveShell) -> None:
    shell.run_cell("x = torch.ones(3, requires_grad=True)", store_history=False)
    dbg = cell(shell, "from torch.autograd import grad\nkept = [grad]\ny = (x * 2).sum()\n(g,) = grad(y, [x])")
    assert dbg.graph.find("MulBackward0")[0].executed  # the call in the cell was watched
    assert shell.user_ns["grad"] is torch.autograd.grad  # as a plain cell would have bound it
    wrapper = shell.user_ns["kept"][0]
    assert wrapper is not torch.autograd.grad
    assert not any(isinstance(c.cell_contents, spy_mod.BackwardSpy) for c in wrapper.__closure__ or ())
    shell.run_cell(
        "import weakref\nrefs = []\nfor i in range(3):\n    big = torch.randn(50, 50, requires_grad=True)\n"
        "    h = big.sin()\n    (gb,) = kept[0](h.sum(), [big])\n    refs.append(weakref.ref(big))\n"
        "    del big, h, gb\nalive = sum(r() is not None for r in refs)\n",
        store_history=False,
    )
    assert shell.user_ns["alive"] == 0  # nothing walked, read or kept by the finished cell's spy
    assert torch.equal(shell.user_ns["g"], torch.full((3,), 2.0))


# -- 3, 5. no forward tracking where dynamo could see it; a comment or re.compile is no torch.compile -----


def test_a_compiled_function_a_helper_calls_is_not_compiled_again(shell: InteractiveShell) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    shell.run_cell(
        "x = torch.ones(3, requires_grad=True)\ndef f(a):\n    return (a * 2).sin().sum()\n"
        "fast = torch.compile(f, backend='eager')\ndef helper(a):\n    return fast(a)\nhelper(x)\n",
        store_history=False,
    )
    assert cell_forward.dynamo_compiled()  # the signal torch keeps: a torch upgrade that drops it fails here
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            result = shell.run_cell("%%gradsight\ny = helper(x)\ny.backward()", store_history=True)
            assert result.error_in_exec is None, result.error_in_exec
        graph = result.result.graph
        assert all(n.source is None for n in graph.nodes)
        (note,) = [n for n in graph.notes if "not recorded" in n]
        assert "torch.compile has compiled code" in note and "torch._dynamo.reset()" in note
    finally:
        torch._dynamo.reset()
    assert not cell_forward.dynamo_compiled()
    dbg = cell(shell, "z = (x * 3).sum()")  # compiled code forgotten: watched again
    assert dbg.graph.find("SumBackward0")[0].source is not None
    assert not any("not recorded" in n for n in dbg.graph.notes)


def test_a_module_compiled_in_place_is_not_watched(shell: InteractiveShell) -> None:
    # model.compile() compiles lazily and in place (the module's own call becomes the compiled one):
    # dynamo has compiled nothing yet, and the model is no OptimizedModule
    import torch._dynamo

    torch._dynamo.reset()
    shell.run_cell(
        "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.l = nn.Linear(4, 4)\n"
        "    def forward(self, x):\n        return torch.relu(self.l(x))\n"
        "model = Net()\nmodel.compile(backend='eager')\nx = torch.randn(2, 4)",
        store_history=False,
    )
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            result = shell.run_cell("%%gradsight\nloss = model(x).sum()", store_history=True)
            assert result.error_in_exec is None, result.error_in_exec
            shell.run_cell("for _ in range(3):\n    model(x)", store_history=False)  # no compile again after it
        graph = result.result.graph
        assert all(n.source is None for n in graph.nodes)
        assert any("compiled by torch.compile" in n for n in graph.notes), graph.notes
    finally:
        torch._dynamo.reset()


def test_a_comment_or_re_compile_is_no_torch_compile(shell: InteractiveShell, no_compiled_code: None) -> None:
    shell.run_cell(TINY_MODEL, store_history=True)
    body_cell = shell.execution_count
    dbg = cell(
        shell,
        "import re\npat = re.compile('a+')  # not torch.compile\n"
        "loss = model(x).pow(2).sum()  # torch.compile(model) later\nnote = 'torch.compile'",
    )
    graph = dbg.graph
    line = "loss = model(x).pow(2).sum()  # torch.compile(model) later"
    assert graph.find("PowBackward0")[0].source == f"In[{body_cell}]:4  {line}"
    assert graph.find("ReluBackward0")[0].module == "model.relu"
    assert not any("not recorded" in n for n in graph.notes)
    # one that compiles is not watched, and says so
    dbg = cell(shell, "loss = model(x).pow(2).sum()\nlater = torch.compile")
    assert dbg.graph.find("PowBackward0")[0].source is None
    assert any("it calls torch.compile" in n for n in dbg.graph.notes)


@pytest.mark.parametrize(
    ("code", "compiles"),
    [
        ("m = torch.compile(model)", True),
        ("@torch.compile\ndef f(a):\n    return a", True),
        ("@torch.compile(mode='max-autotune')\ndef f(a):\n    return a", True),
        ("model.compile()", True),
        ("get_model().compile()", True),  # an object gradsight cannot name: may be a module
        ("torch.compiler.compile(f)", True),
        ("f = torch._dynamo.optimize('eager')(f)", True),
        ("import torch._dynamo as dyn\nf = dyn.optimize('eager')(f)", True),
        ("from torch import compile as tc\nf = tc(f)", True),
        ("from torch._dynamo import optimize\nf = optimize('eager')(f)", True),
        ("f = T.compile(f)", True),  # T is torch, imported under another name in an earlier cell
        ("f = my_compile(f)", True),  # the namespace's name for torch.compile
        ("pat = re.compile('a+')", False),
        ("import re as regex\npat = regex.compile('a+')", False),
        ("code = compile('1 + 1', 'x', 'eval')", False),  # Python's own
        ("# torch.compile(model)\ny = x * 2", False),
        ("s = 'torch.compile'", False),
        ("opt.optimize()", False),
    ],
)
def test_what_compiles_is_read_from_the_code(code: str, compiles: bool) -> None:
    ns = {"torch": torch, "re": re, "T": torch, "my_compile": torch.compile, "model": torch.nn.Linear(2, 2)}
    assert cell_forward.compiles(ast.parse(code), ns) is compiles


# -- 6. options.source_lines applies to cells -------------------------------------------------------------


def test_source_lines_off_records_no_lines_in_a_cell_but_still_modules(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch, no_compiled_code: None
) -> None:
    shell.run_cell(TINY_MODEL, store_history=True)
    monkeypatch.setattr(gs.options, "source_lines", False)
    dbg = cell(shell, "loss = model(x).pow(2).sum()\nloss.backward()")
    assert all(n.source is None for n in dbg.graph.nodes)
    assert dbg.graph.find("ReluBackward0")[0].module == "model.relu"  # module calls are still tracked
    assert not any("not recorded" in n for n in dbg.graph.notes)  # the user's choice: no note
    monkeypatch.setattr(gs.options, "source_lines", True)
    assert cell(shell, "loss = model(x).pow(2).sum()").graph.find("PowBackward0")[0].source is not None


# -- 4. a KeyboardInterrupt shows like any error of a cell ---------------------------------------------------


class Interrupt(TorchFunctionMode):
    """Stands in for Ctrl-C landing inside an op."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.sin:
            raise KeyboardInterrupt
        return func(*args, **(kwargs or {}))


def test_a_keyboard_interrupt_shows_the_graph_so_far_and_only_the_users_frames(
    shell: InteractiveShell, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    displayed: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", displayed.append)
    shell.user_ns["Interrupt"] = Interrupt
    capsys.readouterr()
    result = shell.run_cell(
        "%%gradsight\nx = torch.ones(3, requires_grad=True)\ny = x * 2\nwith Interrupt():\n    z = torch.sin(y)",
        store_history=True,
    )
    assert isinstance(result.error_in_exec, KeyboardInterrupt)  # the cell stops (Run All too)
    out = shown(capsys)
    assert "KeyboardInterrupt" in out and "z = torch.sin(y)" in out
    assert "gradsight/magic.py" not in out and "gradsight/_capture" not in out, out  # no frame of gradsight's
    (dbg,) = displayed
    assert dbg.graph.find("MulBackward0")
    assert any("interrupted" in n for n in dbg.graph.notes), dbg.graph.notes
    assert torch.autograd.grad.__module__ == "torch.autograd"  # the spy came off
    assert torch._C._len_torch_function_stack() == 0


def test_an_interrupt_in_a_rerun_stops_it(shell: InteractiveShell) -> None:
    # only the user's own run of the cell turns an interrupt into a graph; a re-run or why() stops at once
    shell.user_ns["stop"] = [False]
    body = "x = torch.ones(3, requires_grad=True)\ny = (x * 2).sum()\nif stop[0]:\n    raise KeyboardInterrupt"
    dbg = cell(shell, body)
    assert not any("interrupted" in n for n in dbg.graph.notes)
    shell.user_ns["stop"][0] = True
    with pytest.raises(KeyboardInterrupt):
        dbg.rerun()


def test_freed_note_is_not_for_values_the_spy_saw(shell: InteractiveShell) -> None:
    # the values read before the cell's own backward stay readable after scratch backward calls
    shell.run_cell("w = torch.ones(3, requires_grad=True)", store_history=False)
    dbg = cell(shell, "loss = (w * w).sum()\nloss.backward()\n" + "(w * 2).sum().backward()\n" * 6)
    saved = dbg.graph.find("MulBackward0")[0].saved
    assert not any(isinstance(v, Unavailable) for v in saved.values()), saved


def test_interrupted_again_while_capturing_still_stops_the_cell(
    shell: InteractiveShell, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    displayed: list[Any] = []
    monkeypatch.setattr("gradsight.magic._display", displayed.append)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(cell_mod, "capture_namespace", interrupted)
    result = shell.run_cell("%%gradsight\nx = torch.ones(3, requires_grad=True)\nraise KeyboardInterrupt")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert "gradsight/_capture" not in shown(capsys)
    (dbg,) = displayed
    assert dbg.graph.message == cell_mod.INTERRUPTED_AGAIN


@pytest.mark.parametrize(
    "call", ["torch.autograd.backward(loss)", "torch.autograd.backward([loss])", "(gw,) = torch.autograd.grad(loss, w)"]
)
def test_a_direct_autograd_call_is_one_backward_call(shell: InteractiveShell, call: str) -> None:
    # torch.autograd.backward hands itself back to the cell's torch-function mode, which called the
    # wrapper again: recorded twice, the graph said w.grad accumulated over 2 backward calls
    shell.run_cell("w = torch.randn(3, requires_grad=True)")
    dbg = cell(shell, f"w.grad = None\nloss = (w.sin() * w).sum()\n{call}\n")
    assert not any("accumulated" in note for note in dbg.graph.notes), dbg.graph.notes
    assert dbg.graph.node("leaf:w").grad_norm is not None


def test_an_interrupt_in_the_spys_bookkeeping_leaves_no_hook(
    shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: Any, watch: Any) -> None:
        raise KeyboardInterrupt  # a Ctrl-C landing after the prehooks went in

    monkeypatch.setattr(spy_mod.BackwardSpy, "_before_backward", interrupted)
    shell.run_cell("w = torch.randn(3, requires_grad=True)")
    result = shell.run_cell("%%gradsight\nloss = (w.sin() * w).sum()\nloss.backward(retain_graph=True)\n")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    monkeypatch.undo()
    # a plain backward of the same graph later: no gradsight prehook left on it to fire
    fired: list[int] = []
    real = hooks.grad_meta  # what the spy's GradRecorder calls in each hook

    def counted(g: Any) -> Any:
        fired.append(1)
        return real(g)

    monkeypatch.setattr(hooks, "grad_meta", counted)
    shell.run_cell("w.grad = None\nloss.backward()")
    assert fired == []
    cell(shell, "loss = (w.sin() * w).sum()\nloss.backward()")
    assert fired  # what was counted: a spied cell's hooks call it
