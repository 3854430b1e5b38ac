"""The debugger's last runs: each graph with what produced it, bounded, and diffs between them; and
what a re-run's graph says when the run it is compared with ran on other parameters or inputs.

Torch-free: a run's kept tensors travel as an opaque ``captured`` object owned by ``_capture``, what
it ran on as an opaque ``facts`` (``_capture.facts.RunFacts``).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from .diff import GraphDiff, diff
from .graph import Graph
from .schema import number
from .toggles import Toggles

MAX_RUNS = 8


class RerunError(RuntimeError):
    """A re-run that cannot happen, or whose code raised (the message holds the traceback)."""


@dataclass
class RunRecord:
    index: int
    graph: Graph
    captured: Any  # _capture.walk.Captured (its store holds the run's tensors) or None
    toggles: Toggles
    error: str | None = None
    facts: Any = None  # _capture.facts.RunFacts: what it ran on (None: unknown)
    again: str | None = None  # a run made again on what a re-run runs on now: its history label

    @property
    def label(self) -> str:
        if self.again is not None:
            return self.again
        mode = self.graph.run.mode
        if mode == "live":
            return f"step {self.graph.run.step}"
        return "first run" if self.index == 0 and self.toggles.empty else self.toggles.label


class RunHistory:
    """The last :data:`MAX_RUNS` runs; older ones are dropped and their tensors released.

    The memory budget is the debugger's, not each run's: a new run keeps tensors up to the budget,
    and older runs' tensors are released (oldest first) until all the runs together hold no more
    than it. Their graphs stay, with the norms and summaries taken at capture.
    """

    def __init__(self) -> None:
        self.records: list[RunRecord] = []
        self._next = 0

    def add(self, graph: Graph, captured: Any, toggles: Toggles, error: str | None = None, facts: Any = None,
            again: str | None = None, keep: Collection[int] = ()) -> RunRecord:  # fmt: skip
        graph = replace(
            graph, run=replace(graph.run, index=self._next, toggles=None if toggles.empty else toggles.to_wire())
        )
        if captured is not None:
            captured.graph = graph
        record = RunRecord(self._next, graph, captured, toggles, error, facts, again)
        self._next += 1
        self.records.append(record)
        while len(self.records) > MAX_RUNS:  # the oldest first, but never a run in ``keep`` (a diff's baseline)
            oldest = next((r for r in self.records if r.index not in keep), self.records[0])
            self.records.remove(oldest)
            _release(oldest)
        self.fit_budget(record)
        return record

    def fit_budget(self, keep: RunRecord) -> None:
        """Release older runs' tensors (oldest first, never ``keep``'s) until every run's kept
        tensors together fit the budget of ``keep``'s store."""
        ours = _store(keep)
        if ours is None:
            return
        stores = [s for r in self.records if r is not keep and (s := _store(r)) is not None and len(s) > 0]
        while stores and _held([*stores, ours]) > ours.budget_bytes:
            stores.pop(0).evict()

    def get(self, index: int) -> RunRecord | None:
        return next((r for r in self.records if r.index == index), None)

    @property
    def made(self) -> int:
        """How many runs this history was given (the next run's index); older ones may be dropped."""
        return self._next

    @property
    def last(self) -> RunRecord | None:
        return self.records[-1] if self.records else None

    def diff(self, before: int, after: int) -> GraphDiff | None:
        a, b = self.get(before), self.get(after)
        if a is None or b is None or a is b:
            return None
        return diff(a.graph, b.graph, a.index, b.index)

    def to_wire(self) -> list[dict[str, Any]]:
        return [
            {
                "index": r.index,
                "label": r.label,
                "loss": number(r.graph.run.loss),
                "nodes": len(r.graph),
                "error": r.error,
            }
            for r in self.records
        ]

    def release(self) -> None:
        for r in self.records:
            _release(r)
        self.records.clear()


def _store(record: RunRecord) -> Any:
    return getattr(record.captured, "store", None)


def _release(record: RunRecord) -> None:
    store = _store(record)
    if store is not None:
        store.release()


def _held(stores: list[Any]) -> int:
    """Bytes the stores' kept tensors hold together, a storage shared by several counted once."""
    storages: dict[int, int] = {}
    other = 0
    for s in stores:
        shared, rest = s.held()
        storages.update(shared)
        other += rest
    return sum(storages.values()) + other


def differ(a: Toggles, b: Toggles) -> bool:
    """Do two runs' toggles differ in what they run (``apply`` only keeps flags afterwards)?"""
    return replace(a, apply=False) != replace(b, apply=False)


def not_reproduced(shown: Graph, again: Graph) -> str | None:
    """How a re-run to keep tensors differs from the run shown (loss, nodes, gradient norms), or None.
    The loss within 1e-5 (a GPU's atomic adds may reorder sums); gradient norms within 1e-3: a norm
    the hook took in float32 and one taken from the kept tensor (float64 accumulation) differ by
    3e-5 on 2M values of the same gradient. A changed input moves them far more."""

    def close(a: float | None, b: float | None, tolerance: float = 1e-3) -> bool:
        if a is None or b is None:
            return a is b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-12)

    def text(x: float | None) -> str:
        return "none" if x is None else f"{x:.6g}"

    if not close(shown.run.loss, again.run.loss, 1e-5):
        return f"loss {text(shown.run.loss)} then, {text(again.run.loss)} now"
    if [n.id for n in shown.nodes] != [n.id for n in again.nodes]:
        return "another graph"
    for a, b in zip(shown.nodes, again.nodes, strict=True):
        if not close(a.grad_norm, b.grad_norm):
            return f"the gradient into {a.id} has norm {text(a.grad_norm)} then, {text(b.grad_norm)} now"
    return None


def changed_note(changed: Collection[str], since: RunRecord, live: bool, *, now_step: int | None = None,
                 again: int | None = None, after: int | None = None, toggled: bool = False) -> str:  # fmt: skip
    """What a re-run's graph says when ``since`` (the run it is compared with) ran on other parameters
    or inputs (``changed``: kinds from ``Target.changed``). ``again``: the index of the run that made
    ``since``'s toggles again on what runs now, which this graph's diff compares with; on that run's
    own graph, ``after`` is the index of the re-run it is the baseline of. ``toggled``: no such run
    (it failed), and this re-run's toggles differ from ``since``'s."""
    name = _name(since)
    step = getattr(since.facts, "step", None) if live else None  # the live step ``since`` replays
    what, noun = _what(changed, name, step, now_step)
    if after is not None:
        text = (f"{_cap(name)} again, on {noun} as they are now: {what}. It is the baseline of run {after}'s toggles; "
                f"compare it with {name} to see what that change alone did.")  # fmt: skip
    elif again is not None:
        text = (f"{_cap(what)}: gradsight first made {name} again on {noun} as they are now (run {again}), and "
                "compares this run with that one, so the diff shows this re-run's toggles alone; compare with "
                f"{name} to see what the change did.")  # fmt: skip
    else:
        also = " together with this re-run's toggles" if toggled else ""
        text = f"{_cap(what)}: this run uses {noun} as they are now, so the diff with {name} shows that change{also}."
    return text + _what_to_do(changed, step)


def again_label(since: RunRecord, changed: Collection[str], now_step: int | None = None) -> str:
    """The history label of ``since`` made again on what runs now."""
    base = since.label.split(" again, ", 1)[0]  # a run made again from one made again: one "again"
    if "step" in changed and now_step is not None:
        return f"{base} again, on step {now_step}"
    return f"{base} again, {' and '.join(k for k in ('parameters', 'inputs') if k in changed)} now"


def _name(record: RunRecord) -> str:
    run = record.graph.run
    return f"step {run.step}" if run.mode == "live" else f"run {record.index}"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _what(changed: Collection[str], name: str, step: int | None, now_step: int | None) -> tuple[str, str]:
    """What changed since ``name`` (a run replaying live ``step``), and what a run now runs on, in words."""
    if "step" in changed:
        last = f"step {now_step}" if now_step is not None else "a later step"
        return f"the last step recorded is {last} now, and a re-run replays that one, not {name}'s", last
    parts, nouns = [], []
    if "parameters" in changed:
        parts.append(f"the parameters changed since {name} (an optimizer step?)")
        nouns.append("the parameters")
    if "inputs" in changed:
        whose = f"step {step}'s inputs were" if step is not None else "the inputs were"
        parts.append(f"{whose} written in place since {name}" + (" (a batch buffer refilled?)" if step else ""))
        nouns.append("the inputs")
    return "; ".join(parts), " and ".join(nouns)


def _what_to_do(changed: Collection[str], step: int | None) -> str:
    """For a live re-run (of ``step``): what it replays, and how to re-run the step as it was."""
    if step is None:
        return ""
    text = ""
    if "inputs" in changed:
        text += (f" The re-run ran on what the inputs hold now, not on step {step}'s batch: to re-run a step on its "
                 "own batch, give the model a new tensor per batch instead of refilling one in place.")  # fmt: skip
    return text
