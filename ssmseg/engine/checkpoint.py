"""Checkpoints: plain dicts of tensors and JSON-able metadata, written atomically (temporary file, then
rename), loadable with ``torch.load(..., weights_only=True)`` on a CPU-only machine."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssmseg import outputs
from ssmseg.errors import InputError

FORMAT = 1


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: dict[str, Any], path: Path) -> None:
    """Atomic: a reader never sees a partial checkpoint, and a crash or a full disk mid-write keeps the previous
    one (``outputs.write_bytes``: temporary file, fsync, rename)."""
    path = Path(path)
    buffer = io.BytesIO()
    try:
        torch.save({"format": FORMAT, **state}, buffer)
        path.parent.mkdir(parents=True, exist_ok=True)
        outputs.write_bytes(path, buffer.getvalue())
    except OSError as exc:  # a full disk, a lost folder: one line naming the checkpoint
        text = str(outputs.io_error(exc, path=path)).replace("cannot write '", "cannot write checkpoint '", 1)
        raise InputError(f"{text} (the previous checkpoint is kept)") from None
    except RuntimeError as exc:  # torch reports its own write faults as a RuntimeError
        raise InputError(
            f"cannot write checkpoint '{path}' ({str(exc).splitlines()[0][:120]}); check the free "
            "space and permissions there (the previous checkpoint is kept)"
        ) from exc


def resolve(path: Path) -> Path:
    """The checkpoint file that ``path`` names: itself, or a run folder's best.pt (else latest.pt)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.pt", path / "checkpoints" / "latest.pt", path / "best.pt"):
            if candidate.is_file():
                return candidate
        raise InputError(f"no checkpoint in run folder '{path}' (looked for checkpoints/best.pt and latest.pt)")
    if not path.is_file():
        raise InputError(f"checkpoint '{path}' does not exist; check the path")
    return path


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load on any device; a corrupt or foreign file is a one-line error."""
    path = resolve(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise InputError(
            f"checkpoint '{path}' is unreadable or corrupt ({type(exc).__name__}); use another one"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise InputError(f"'{path}' is not an ssmseg checkpoint (format {FORMAT}); use a checkpoint written by ssmseg")
    return state
