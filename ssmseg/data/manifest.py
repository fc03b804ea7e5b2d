"""The dataset folder's ``manifest.json``: written last (atomically), so its presence means complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssmseg.errors import InputError

FORMAT_VERSION = 2
ARRAYS = ("images.npy", "labels.npy", "valid.npy")
FIELD_ARRAYS = ("fields.npy",)


def arrays_of(manifest: dict[str, Any] | None) -> tuple[str, ...]:
    """The array files a dataset folder holds: patches for segmentation, fields for reconstruction."""
    return FIELD_ARRAYS if (manifest or {}).get("task") == "reconstruction" else ARRAYS


def write(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / "manifest.json.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)  # streamed: no string of the whole manifest in memory
    tmp.replace(folder / "manifest.json")


def read_if_complete(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete dataset folder, else None."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if all((Path(folder) / a).is_file() for a in arrays_of(manifest)) else None


def load(folder: Path) -> dict[str, Any]:
    """The manifest of a dataset folder; a missing or incomplete folder is a one-line error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"dataset folder '{folder}' does not exist; run `ssmseg prep` first or fix data.dataset")
    manifest = read_if_complete(folder)
    if manifest is None:
        missing = [a for a in ("manifest.json", *ARRAYS, *FIELD_ARRAYS) if not (folder / a).is_file()]
        raise InputError(
            f"dataset folder '{folder}' is incomplete (missing {', '.join(missing) or 'a readable manifest'}); "
            "run `ssmseg prep` again"
        )
    if manifest.get("format") != FORMAT_VERSION:
        raise InputError(f"'{folder}' was prepared by another ssmseg version; run `ssmseg prep --force` again")
    return manifest
