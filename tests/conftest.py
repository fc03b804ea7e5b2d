"""Shared fixtures: the real datasets in ../shared/data (skipped when absent) and a clean scan backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("SSMSEG_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $SSMSEG_SHARED_DATA); tests using it skip when it is absent."""
    root = _shared_data()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (clone ../shared or set SSMSEG_SHARED_DATA)")
    return root


@pytest.fixture(autouse=True)
def _default_scan_backend():
    """Every test starts with the scan backend on auto and a fixed seed."""
    from ssmseg.ssm import set_default_backend

    set_default_backend("auto")
    torch.manual_seed(0)
    yield
    set_default_backend("auto")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
