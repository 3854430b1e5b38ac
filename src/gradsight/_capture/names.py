"""Names: which leaf is which parameter, which module an op belongs to, and stable node ids.

Ids are stable across re-runs of the same code (not ``id()``): an op is named after its module,
its op name and its rank among same-named ops of that module in creation (sequence-number) order,
e.g. ``layer1/AddmmBackward0#0``; a named leaf is ``leaf:layer1.weight``. Freezing one parameter
therefore renames nothing else in other modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch

from ..graph import LeafInfo
from .text import with_article


def leaf_names_from_params(params: object) -> dict[torch.Tensor, str]:
    """``params`` as torchviz's ``make_dot(params=...)``: a module, or a name → tensor mapping.

    >>> lin = torch.nn.Linear(2, 1)
    >>> leaf_names_from_params(lin)[lin.bias]
    'bias'
    """
    if params is None:
        return {}
    if isinstance(params, torch.nn.Module):
        return {p: plain_name(name) for name, p in params.named_parameters()}
    if isinstance(params, Mapping):
        names: dict[torch.Tensor, str] = {}
        for name, t in params.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(
                    f"params[{name!r}] is {with_article(type(t).__name__)}, not a tensor: pass an nn.Module "
                    "or a dict of name -> tensor, e.g. params=dict(model.named_parameters())"
                )
            if not t.is_leaf:
                raise ValueError(
                    f"params[{name!r}] is computed (grad_fn={type(t.grad_fn).__name__}), not a leaf: params names "
                    "leaf tensors (parameters, inputs that require grad); name the leaf it comes from"
                )
            if not str(name):
                raise ValueError("params has an empty name: give every tensor a name, e.g. params={'w': w}")
            names.setdefault(t, str(name))
        return names
    raise TypeError(
        f"params must be an nn.Module or a dict of name -> tensor, not {type(params).__name__}: "
        "e.g. params=model or params=dict(model.named_parameters())"
    )


def parameter_aliases(module: torch.nn.Module) -> dict[str, str]:
    """Every other path of a parameter reached under several (tied weights: ``head.weight = emb.weight``;
    a module registered twice) → the one :func:`leaf_names_from_params` names it by, the first. Toggles
    accept either; the leaf is shown under the first.

    >>> emb, head = torch.nn.Embedding(3, 2), torch.nn.Linear(2, 3, bias=False)
    >>> head.weight = emb.weight
    >>> parameter_aliases(torch.nn.ModuleDict({"emb": emb, "head": head}))
    {'head.weight': 'emb.weight'}
    """
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        name = plain_name(name)
        shown = first.setdefault(id(p), name)
        if name != shown:
            aliases.setdefault(name, shown)
    return aliases


def leaf_aliases(
    modules: Iterable[tuple[str, torch.nn.Module]], leaf_names: Mapping[torch.Tensor, str]
) -> dict[str, str]:
    """:func:`parameter_aliases` for a run's (path, module) pairs (``RunSpec.modules``: one module
    listed once, however many paths reach it): every path of a named leaf other than its name → its
    name. The second path of a module registered twice (``self.b = self.a``) counts too.

    >>> emb, head = torch.nn.Embedding(3, 2), torch.nn.Linear(2, 3, bias=False)
    >>> head.weight = emb.weight
    >>> model = torch.nn.ModuleDict({"emb": emb, "head": head})
    >>> leaf_aliases(module_names(model), leaf_names_from_params(model))
    {'head.weight': 'emb.weight'}
    """
    pairs = list(modules)
    listed = {path for path, _ in pairs}
    out: dict[str, str] = {}

    def add(path: str, tensor: torch.Tensor) -> None:
        shown = leaf_names.get(tensor)
        if shown is not None and shown != path:
            out.setdefault(path, shown)

    for path, module in pairs:
        prefix = f"{path}." if path else ""
        for attr, p in module._parameters.items():
            if p is not None:
                add(plain_name(prefix + attr), p)
        for child_name, child in module._modules.items():
            child_path = plain_name(prefix + child_name)
            if child is not None and child_path not in listed:  # a second path to a module listed elsewhere
                for sub, p in child.named_parameters(remove_duplicate=False):
                    add(plain_name(f"{child_path}.{sub}"), p)
    return out


_COMPILED = "_orig_mod"  # the attribute torch.compile's OptimizedModule keeps the real module in


def plain_name(name: str) -> str:
    """A module or parameter path without ``torch.compile``'s wrapper: the names the user wrote.

    >>> plain_name("_orig_mod.layer1.weight"), plain_name("block._orig_mod"), plain_name("_orig_mod")
    ('layer1.weight', 'block', '')
    """
    if _COMPILED not in name:
        return name
    return ".".join(part for part in name.split(".") if part != _COMPILED)


def module_names(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """``module.named_modules()`` with :func:`plain_name` paths (a compiled model and the model
    it wraps are both the root ``""``)."""
    return [(plain_name(name), m) for name, m in module.named_modules()]


def name_parts(name: str) -> list[str] | None:
    """A leaf name split at its attribute dots, never inside a subscript: the path code reaches the
    tensor by. None when the name is not such a path (an unclosed bracket or quote).

    >>> name_parts("models['enc'].layer1.weight"), name_parts("params['0.bias']"), name_parts("w[0")
    (["models['enc']", 'layer1', 'weight'], ["params['0.bias']"], None)
    """
    parts: list[str] = []
    start = depth = 0
    quote = ""
    escaped = False
    for k, ch in enumerate(name):
        if quote:  # inside a subscript's string key: dots and brackets are the key's own
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif depth and ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            if not depth:
                return None
            depth -= 1
        elif ch == "." and not depth:
            parts.append(name[start:k])
            start = k + 1
    if depth or quote:
        return None
    parts.append(name[start:])
    return parts


def module_of_leaf(name: str | None) -> str | None:
    """The module path in a leaf's name: ``layer1.weight`` → ``layer1``, ``models['enc'].weight`` →
    ``models['enc']``; None for a name without an attribute dot outside subscripts (``input``,
    ``params['0.bias']``: a dict key is no module path).

    >>> module_of_leaf("layer1.weight"), module_of_leaf("params['0.bias']"), module_of_leaf("input[1]")
    ('layer1', None, None)
    """
    parts = _module_parts(name)
    return ".".join(parts) if parts else None


def _module_parts(name: str | None) -> list[str] | None:
    parts = name_parts(name) if name and "." in name else None
    return parts[:-1] if parts is not None and len(parts) > 1 and all(parts) else None


def infer_module(children: Sequence[LeafInfo | None]) -> str | None:
    """The module of an op from the named parameters it consumes directly (``layer1.weight`` →
    ``layer1``); the common prefix when several modules meet; None when it consumes none."""
    paths = [p for p in (_module_parts(c.name) for c in children if c is not None) if p]
    if not paths:
        return None
    common = paths[0]
    for p in paths[1:]:
        k = 0
        while k < min(len(common), len(p)) and common[k] == p[k]:
            k += 1
        common = common[:k]
    return ".".join(common) or None


def op_ids(names: Sequence[str], seqs: Sequence[int], modules: Sequence[str | None],
           leaves: Sequence[LeafInfo | None], topo: Sequence[int]) -> list[str]:  # fmt: skip
    """A stable, unique id per node (see the module docstring)."""
    ids = [""] * len(names)
    taken: set[str] = set()
    counters: dict[str, int] = {}
    ops = sorted((i for i in topo if leaves[i] is None), key=lambda i: seqs[i])  # stable: ties keep topo order
    for i in ops:
        base = f"{modules[i]}/{names[i]}" if modules[i] else names[i]
        ids[i] = _take(base, counters, taken)
    for i in topo:
        leaf = leaves[i]
        if leaf is None:
            continue
        if leaf.name and f"leaf:{leaf.name}" not in taken:
            ids[i] = f"leaf:{leaf.name}"
            taken.add(ids[i])
        else:
            ids[i] = _take(f"leaf:{leaf.name}" if leaf.name else names[i], counters, taken)
    return ids


def _take(base: str, counters: dict[str, int], taken: set[str]) -> str:
    k = counters.get(base, 0)
    candidate = f"{base}#{k}"
    while candidate in taken:
        k += 1
        candidate = f"{base}#{k}"
    counters[base] = k + 1
    taken.add(candidate)
    return candidate
