"""Datasets as they ship: the dataset presets (``presets/isprs_vaihingen.yaml``, ``isprs_potsdam``, ``uavid``,
``loveda``) name their files relative to the folder the user downloaded and unpacked them into, so
``ssmseg prep --preset P --check DOWNLOAD_DIR`` checks that folder, and ``prep`` run from it prepares it."""

from __future__ import annotations

import glob
from pathlib import Path

from ssmseg.config import Config


def under(root: Path, patterns: list[str]) -> list[str]:
    """Relative file patterns placed under ``root`` (its own name escaped, so '[' in a folder name is literal)."""
    base = glob.escape(str(Path(root)))
    return [p if Path(p).is_absolute() else str(Path(base) / p) for p in patterns]


def rooted(cfg: Config, root: Path) -> Config:
    """``cfg`` with relative ``prep.images`` and ``prep.masks`` read from ``root`` instead of the current folder."""
    prep = cfg.prep.model_copy(update={"images": under(root, cfg.prep.images), "masks": under(root, cfg.prep.masks)})
    return cfg.model_copy(update={"prep": prep})


def is_download(folder: Path) -> bool:
    """A folder given to ``--check`` with a preset or config: a download to check unless it is a prepared dataset."""
    return Path(folder).is_dir() and not (Path(folder) / "manifest.json").exists()
