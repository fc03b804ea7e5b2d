"""`ssmseg prep` for reconstruction: fields from image/raster files, ``.npy``/``.npz`` stacks or the
built-in sinusoid generator, into a dataset folder (``manifest.json`` + ``fields.npy`` (N, C, H, W)
float32 in the data's units).

Splits are made on units that never share pixels: a spatial block of tiles of one file (``blocks``; every
band of a tile stays in the same unit), a whole file (``sources``), or a single field (``random``; the
generator's fields are independent, so this is the natural choice there). Value statistics come from
training fields only (and per cv fold) and are applied on load.
"""

from __future__ import annotations

import glob
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg.config.schema import Config
from ssmseg.data import manifest as mf
from ssmseg.data.fields import STACK_SUFFIXES, field_stats, read_image, read_stack, sinusoid_fields
from ssmseg.data.io import sha256_file
from ssmseg.data.prepare import PrepResult
from ssmseg.errors import ConfigError, InputError


def _units(sources: list[tuple[str, np.ndarray, list[tuple[int, int]]]], mode: str, block: int) -> list[tuple]:
    """One unit key per field: fields with the same key share pixels and must share a split."""
    keys = []
    for s, (_, array, where) in enumerate(sources):
        for j in range(len(array)):
            if mode == "sources":
                keys.append((s,))
            elif mode == "random" or not where:
                keys.append((s, j))
            else:
                r, c = where[j]
                keys.append((s, r // block, c // block))
    return keys


def _tile(array: np.ndarray, size: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(N, C, H, W) -> (N * tiles, C, size, size) and each tile's (row, col) in pixels."""
    n, c, h, w = array.shape
    rows, cols = range(0, h - size + 1, size), range(0, w - size + 1, size)
    tiles = [(array[:, :, r : r + size, q : q + size], (r, q)) for r in rows for q in cols]
    stacked = np.stack([t for t, _ in tiles], axis=1).reshape(-1, c, size, size)
    where = [pos for _ in range(n) for _, pos in tiles]
    return stacked, where


def _read_sources(cfg: Config) -> tuple[list[tuple[str, np.ndarray, list[tuple[int, int]]]], list[str]]:
    fp = cfg.prep.fields
    paths = sorted({p for pattern in cfg.prep.images for p in (glob.glob(pattern) or [pattern])})
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise InputError(f"no such file: {missing[0]}; check prep.images")
    out = []
    for path in paths:
        stack = Path(path).suffix.lower() in STACK_SUFFIXES
        array = read_stack(path, fp.key) if stack else read_image(path, fp.mode, fp.key)
        where: list[tuple[int, int]] = []
        if fp.size is not None:
            if min(array.shape[2:]) < fp.size:
                raise InputError(f"'{path}' is {array.shape[2]}x{array.shape[3]}, smaller than prep.fields.size "
                                 f"{fp.size}; use a smaller size or drop the file")  # fmt: skip
            array, where = _tile(array, fp.size)
            if not stack:  # tiles touching nodata are not fields
                keep = ~np.isnan(array).any(axis=(1, 2, 3))
                array, where = array[keep], [w for w, k in zip(where, keep, strict=True) if k]
        out.append((path, array.astype(np.float32), where))
    shapes = {a.shape[1:] for _, a, _ in out}
    if len(shapes) > 1:
        listing = "; ".join(f"{p}: {a.shape[1]}x{a.shape[2]}x{a.shape[3]}" for p, a, _ in out[:4])
        raise InputError(f"fields of different sizes in one dataset ({listing}, CxHxW); set prep.fields.size to "
                         "cut every file into tiles of one size")  # fmt: skip
    return out, [sha256_file(p) for p, _, _ in out]


def prepare_fields(cfg: Config, out: Path, force: bool = False, synthetic: bool = False) -> PrepResult:
    """Write the field dataset ``out``; nothing is written when any input is bad."""
    out, fp, sp = Path(out), cfg.prep.fields, cfg.prep.split
    if synthetic:
        fields = sinusoid_fields(fp.count, fp.size or 32, fp.channels, fp.n_terms, fp.max_cycles, fp.seed)
        sources = [("sinusoids", fields, [])]
        hashes = ["sinusoids"]
    else:
        if not cfg.prep.images:
            raise ConfigError("prep.images is empty: list the field files (images, rasters, .npy/.npz stacks)")
        sources, hashes = _read_sources(cfg)
    settings = {"fields": fp.model_dump(mode="json"), "split": sp.model_dump(mode="json"), "synthetic": synthetic,
                "images": cfg.prep.images}  # fmt: skip
    digest = hashlib.sha256(json.dumps({"settings": settings, "sources": hashes, "format": mf.FORMAT_VERSION},
                                       sort_keys=True).encode()).hexdigest()  # fmt: skip
    existing = mf.read_if_complete(out)
    if existing is not None and existing.get("input_hash") == digest:
        return PrepResult(out, True, existing)
    if out.exists() and not force:
        raise InputError(f"'{out}' already exists with other inputs; pass --force to replace it or choose another "
                         "--out")  # fmt: skip
    fields = np.concatenate([a for _, a, _ in sources])
    if len(fields) < 3:
        raise InputError(f"only {len(fields)} fields; a dataset needs at least 3 (train, val, test)")
    block = max(1, (sp.block_size or 2 * fields.shape[-1]) // fields.shape[-1])
    keys = _units(sources, "random" if synthetic and sp.mode == "blocks" else sp.mode, block)
    split, fold = _assign(keys, sp.ratios, sp.folds, sp.seed)
    stats = {"train": field_stats(fields[split == "train"]).to_dict()}
    for k in range(sp.folds):
        part = (fold >= 0) & (fold != k)
        if part.any():
            stats[f"fold_{k}"] = field_stats(fields[part]).to_dict()
    origin = [(s, j) for s, (_, a, _) in enumerate(sources) for j in range(len(a))]
    manifest: dict[str, Any] = {
        "format": mf.FORMAT_VERSION, "task": "reconstruction", "count": len(fields),
        "channels": int(fields.shape[1]), "size": [int(fields.shape[2]), int(fields.shape[3])],
        "mode": fp.mode, "synthetic": synthetic, "input_hash": digest,
        "sources": [{"path": p, "sha256": h, "fields": len(a)}
                    for (p, a, _), h in zip(sources, hashes, strict=True)],
        "split": {**sp.model_dump(mode="json"), "mode": "random" if synthetic else sp.mode},
        "counts": {part: int((split == part).sum()) for part in ("train", "val", "test")},
        "fields": [{"source": s, "index": j, "split": str(split[i]), "fold": int(fold[i])}
                   for i, (s, j) in enumerate(origin)],
        "stats": stats,
    }  # fmt: skip
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        np.save(tmp / "fields.npy", fields)
        mf.write(tmp, manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepResult(out, False, manifest)


def _assign(keys: list[tuple], ratios, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Units shuffled by ``seed`` and cut by the ratios; folds dealt round-robin over non-test units."""
    units = sorted(set(keys))
    if len(units) < 3:
        raise InputError(f"the fields form only {len(units)} independent unit(s) (files or blocks); splitting needs "
                         "at least 3: add files, use prep.split.mode random for independent fields, or smaller "
                         "prep.split.block_size")  # fmt: skip
    order = np.random.default_rng(seed).permutation(len(units))
    n_test = max(1, round(ratios[2] * len(units)))
    n_val = max(1, round(ratios[1] * len(units)))
    if n_test + n_val >= len(units):
        n_test, n_val = 1, 1
    part_of, fold_of = {}, {}
    for rank, u in enumerate(order):
        unit = units[u]
        part_of[unit] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        fold_of[unit] = -1 if rank < n_test else (rank - n_test) % folds
    split = np.array([part_of[k] for k in keys])
    fold = np.array([fold_of[k] for k in keys])
    return split, fold
