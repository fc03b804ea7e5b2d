"""Shared fixtures: the real datasets in ../shared/data beside the repository (skipped when absent) and a clean
scan backend."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> Path | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip()).resolve() if out.stdout.strip() else None


def _shared_data() -> Path:
    """$SSMSEG_SHARED_DATA, else shared/data beside the repository's root (a clone's, then the main checkout's
    when this is a git worktree), found from the repository itself, so tests run from any directory."""
    env = os.environ.get("SSMSEG_SHARED_DATA")
    if env:
        return Path(env)
    roots = [REPO, _git("rev-parse", "--show-toplevel")]
    common = _git("rev-parse", "--path-format=absolute", "--git-common-dir")  # a worktree's main checkout
    roots.append(common.parent if common is not None else None)
    candidates = [root.parent / "shared" / "data" for root in roots if root is not None]
    return next((c for c in candidates if c.is_dir()), candidates[0])


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Kernels, synthetic scenes and datasets go to a temporary cache, not the user's ~/.cache."""
    old = os.environ.get("SSMSEG_CACHE_DIR")
    os.environ["SSMSEG_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("SSMSEG_CACHE_DIR", None)
    else:
        os.environ["SSMSEG_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """The built-in hyperspectral scene prepared with 16-pixel crops (session-wide, read-only)."""
    from ssmseg.config import build_config
    from ssmseg.data.builtin import prepare_synthetic

    cfg = build_config(explicit={"data": {"crop_size": 16}, "prep": {"split": {"block_size": 32, "folds": 2}}})
    return prepare_synthetic(cfg, "hyperspectral", tmp_path_factory.mktemp("synthetic") / "ds").out


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
