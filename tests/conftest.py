"""Shared fixtures: the embedded model (converted once per machine) and the location of ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from llama_server import llama_server  # noqa: F401

from aftertune.models.embedded import EMBEDDED_NAME, embedded_model_folder
from aftertune.models.hf import HFModel

#: Real public data beside the checkout (tests that need it skip with a reason when it is absent).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """A path under ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the shared public data beside the checkout), which is absent here")
    return path


@pytest.fixture(scope="session")
def embedded_folder() -> Path:
    return embedded_model_folder()


@pytest.fixture(scope="session")
def embedded(embedded_folder: Path) -> HFModel:
    """The embedded SmolLM2-135M-Instruct, fp32 on CPU; tests must not attach adapters to it."""
    return HFModel(embedded_folder, name=EMBEDDED_NAME, batch_size=16)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow (CI=true does too)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("CI", "").lower() == "true":
        return
    skip = pytest.mark.skip(reason="slow (over ~30 s): runs in CI (CI=true) or with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
