"""What the %%gradsight cell tests share: a small model as cell source, running a numbered cell."""

from __future__ import annotations

import re
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

TINY_MODEL = """\
class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Linear(6, 5)
        self.relu = nn.ReLU()
        self.layer2 = nn.Linear(5, 2)
    def forward(self, x):
        h = self.relu(self.layer1(x))
        return torch.tanh(self.layer2(h)) * 2
model = TinyModel()
x = torch.randn(4, 6)
"""


def cell(sh: InteractiveShell, body: str) -> Any:
    """Run ``body`` as the next numbered cell (``In[n]``), under %%gradsight."""
    return sh.run_cell("%%gradsight\n" + body, store_history=True).result


def shown(capsys: Any) -> str:
    """What the cell printed, without colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
