"""What a ``%%gradsight`` cell's re-run leaves of the user's objects (namespace_guard.NamespaceGuard)."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell


def test_a_rerun_of_a_cell_that_registers_hooks_leaves_the_hooks_as_they_were(shell: InteractiveShell) -> None:
    # the seed notebook's backward-hook example: every re-run registered the hooks again
    shell.run_cell(
        "torch.manual_seed(0)\nmodel = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))\n"
        "calls = []\ndef print_hook(module, _inputs, _outputs):\n    calls.append(type(module).__name__)\n"
        "x = torch.rand(20, 4, requires_grad=True)\nseen = []",
        store_history=False,
    )
    dbg = shell.run_cell(
        "%%gradsight\nfor module in model.modules():\n    if isinstance(module, nn.Linear):\n"
        "        module.register_full_backward_hook(print_hook)\n"
        "        module.register_forward_pre_hook(lambda m, a: None)\n"
        "x.register_hook(seen.append)\nmodel[0].weight.register_post_accumulate_grad_hook(seen.append)\n"
        "loss = model(x).sum()\nloss.backward()",
        store_history=False,
    ).result
    model, x = shell.user_ns["model"], shell.user_ns["x"]

    def hooks() -> list[int]:
        per_module = [len(getattr(m, a)) for m in model for a in ("_backward_hooks", "_forward_pre_hooks")]
        return [*per_module, len(x._backward_hooks), len(model[0].weight._post_accumulate_grad_hooks)]

    after_cell = hooks()
    assert after_cell == [1, 1, 1, 1, 1, 1]
    dbg.rerun()
    dbg.rerun(requires_grad={"model.1": False})
    assert hooks() == after_cell
    shell.user_ns["calls"].clear()
    shell.user_ns["seen"].clear()
    model(x).sum().backward()
    assert shell.user_ns["calls"] == ["Linear", "Linear"] and len(shell.user_ns["seen"]) == 2
