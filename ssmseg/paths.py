"""Where ssmseg keeps what it builds or generates: ``$SSMSEG_CACHE_DIR``, default ``~/.cache/ssmseg``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("SSMSEG_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "ssmseg"
    )
    return Path(root)
