"""Each package names its public API in __all__, and every name there resolves."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "aftertune",
    "aftertune.models",
    "aftertune.judges",
    "aftertune.data",
    "aftertune.audit",
    "aftertune.evals",
    "aftertune.report",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_all_names_resolve(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, f"{package} has an empty __all__"
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_import_is_light() -> None:
    """`import aftertune` must not import torch: the CLI's --help stays instant."""
    code = "import sys, aftertune; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
