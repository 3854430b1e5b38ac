"""gradsight refuses a torch too old to run it safely, with a message that says what to do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradsight._capture import MIN_TORCH, require_torch


@pytest.mark.parametrize("version", ["2.9.1", "2.5.1+cu121", "2.1.2", "1.13.1", "2.9.0a0+git1234"])
def test_an_older_torch_is_refused_with_what_to_do(version: str) -> None:
    with pytest.raises(ImportError) as info:
        require_torch(version)
    message = str(info.value)
    assert f"this is torch {version}" in message
    assert "torch >= 2.10" in message and "pip install" in message


@pytest.mark.parametrize("version", ["2.10.0", "2.11.0+cu130", "2.13.0", "2.14.1", "2.15.0.dev20261101", "3.0.0"])
def test_supported_torch_versions_pass(version: str) -> None:
    require_torch(version)


def test_a_new_enough_version_without_the_unpack_hook_is_refused_too() -> None:
    with pytest.raises(ImportError, match=r"this is torch 2\.10\.0a0"):  # an early 2.10 nightly
        require_torch("2.10.0a0+git1234", unpack_hook_visible=False)


def test_the_running_torch_passes_and_the_package_declares_the_same_bound() -> None:
    require_torch(torch.__version__)
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()  # tomllib is 3.11+
    declared = re.findall(r'^\s*"torch([<>=!~][^"]*)",?\s*$', pyproject, flags=re.M)
    assert declared == [">=" + ".".join(map(str, MIN_TORCH))]


def test_load_ext_under_an_older_torch_fails_at_once_and_registers_nothing() -> None:
    code = """
import torch
torch.__version__ = "2.9.1"  # as an older install reports it
from IPython.testing.globalipapp import start_ipython
sh = start_ipython()
try:
    sh.run_line_magic("load_ext", "gradsight")
except ImportError as e:
    print("refused:", e)
print("registered:", "gradsight" in sh.magics_manager.magics["cell"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "refused: gradsight needs torch >= 2.10, and this is torch 2.9.1" in out, out
    assert "registered: False" in out, out
