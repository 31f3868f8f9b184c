"""Shared test configuration: markers that skip with a reason, and the path of the real data."""

from __future__ import annotations

from pathlib import Path

import pytest

import splatlab  # noqa: F401  (before any torch import: sets the OpenMP wait policy, see splatlab/__init__.py)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    no_cuda = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False)")
    no_data = pytest.mark.skip(reason=f"needs the real data folder {SHARED_DATA} (absent)")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(no_cuda)
        if "data" in item.keywords and not SHARED_DATA.is_dir():
            item.add_marker(no_data)


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (tests using it are marked ``data`` and skipped when it is absent)."""
    return SHARED_DATA
