"""Everything that imports torch: walking graphs, reading saved values, summarizing tensors.

Importing this package checks the torch version first (see ``require_torch``): on an older torch
gradsight would silently read saved tensors it must leave alone, so it refuses to run instead.
"""

from __future__ import annotations

import re

import torch

# The oldest torch gradsight runs on (declared in pyproject.toml too). What it needs from it:
# - 2.10: a saved tensor's handle exposes its ``unpack_hook``. That is how gradsight tells a
#   tensor packed by a non-reentrant checkpoint or by the user's ``saved_tensors_hooks`` apart;
#   without it, reading such a tensor re-runs the checkpointed forward (spectral norm's vectors
#   move, the user's next gradient changes) or calls a one-shot unpack hook before the user's
#   backward does (which then fails). Checked on 2.5.1, 2.7.1 and 2.9.1: those fail that way.
# - 2.5: ``Node._input_metadata`` (every node's output shapes, the derived gradient norms).
MIN_TORCH = (2, 10)


def require_torch(version: str, unpack_hook_visible: bool = True) -> None:
    """Refuse a torch older than ``MIN_TORCH``, saying what to do (builds like ``2.11.0+cu130``,
    ``2.12.0a0+git…`` and ``2.13.0.dev20261101`` are read by their release numbers), or one whose
    saved-tensor handles do not show their unpack hook (an early 2.10 nightly, a custom build)."""
    found = re.match(r"(\d+)\.(\d+)", version)
    if unpack_hook_visible and (found is None or (int(found[1]), int(found[2])) >= MIN_TORCH):
        return
    need = ".".join(map(str, MIN_TORCH))
    raise ImportError(
        f"gradsight needs torch >= {need}, and this is torch {version}. Older torch does not tell "
        "gradsight which saved tensors belong to a checkpoint or to your saved_tensors_hooks, so "
        "reading them could change your gradients. Upgrade torch (e.g. `pip install 'torch>="
        f"{need}'`, choosing the CPU or CUDA build you want), then restart the kernel."
    )


require_torch(torch.__version__, hasattr(torch._C._autograd.SavedTensor, "unpack_hook"))
