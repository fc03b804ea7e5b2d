"""The dataset folder's ``manifest.json``: written last (atomically), so its presence means complete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from ssmseg.errors import InputError

FORMAT_VERSION = 2
ARRAYS = ("images.npy", "labels.npy", "valid.npy")
FIELD_ARRAYS = ("fields.npy",)


def holds(manifest: dict[str, Any] | None) -> str:
    """What a dataset folder holds, read from its manifest: ``fields`` (whole fields) or ``patches`` (image patches
    with masks); a manifest that cannot be read is taken for patches."""
    return "fields" if isinstance(manifest, dict) and "fields" in manifest else "patches"


def arrays_of(manifest: dict[str, Any] | None) -> tuple[str, ...]:
    """The array files a dataset folder holds: patch arrays, or the fields."""
    return FIELD_ARRAYS if holds(manifest) == "fields" else ARRAYS


def write(folder: Path, manifest: dict[str, Any]) -> None:
    tmp = folder / "manifest.json.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)  # streamed: no string of the whole manifest in memory
    tmp.replace(folder / "manifest.json")


def read_if_complete(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete dataset folder (every array whole), else None."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and not damaged_arrays(folder, manifest) else None


def damaged_arrays(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """'name (why)' for each array that is unreadable, truncated, or not one entry per manifest item."""
    out = []
    items = manifest.get(holds(manifest))
    for name in arrays_of(manifest):
        path = Path(folder) / name
        try:
            with open(path, "rb") as f:
                version = npy_format.read_magic(f)
                read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, _, dtype = read(f)
                expected = f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
            size = path.stat().st_size
        except (OSError, ValueError) as exc:
            out.append(f"{name} ({type(exc).__name__})")
            continue
        if size < expected:
            out.append(f"{name} (truncated: {size} of {expected} bytes)")
        elif isinstance(items, list) and shape[:1] != (len(items),):
            out.append(f"{name} ({shape[0] if shape else 0} entries, the manifest {len(items)})")
    return out


def load(folder: Path) -> dict[str, Any]:
    """The manifest of a dataset folder; a missing or incomplete folder is a one-line error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"dataset folder '{folder}' does not exist; run `ssmseg prep` first or fix data.dataset")
    manifest = read_if_complete(folder)
    if manifest is None:
        try:
            whole = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            whole = None
        whole = whole if isinstance(whole, dict) else None
        missing = [a for a in ("manifest.json", *arrays_of(whole)) if not (folder / a).is_file()]
        if not missing:
            damaged = damaged_arrays(folder, whole) if whole is not None else []
            if damaged:
                raise InputError(
                    f"dataset folder '{folder}' is damaged: {', '.join(damaged)}; prepare it again "
                    "(ssmseg prep --force with the same --out)"
                )
        raise InputError(
            f"dataset folder '{folder}' is incomplete (missing {', '.join(missing) or 'a readable manifest'}); "
            "run `ssmseg prep` again"
        )
    if manifest.get("format") != FORMAT_VERSION:
        raise InputError(f"'{folder}' was prepared by another ssmseg version; run `ssmseg prep --force` again")
    return manifest
