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
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg import outputs
from ssmseg.config.schema import Config
from ssmseg.data import manifest as mf
from ssmseg.data.fields import FieldSource, field_stats, read_field_sources, sinusoid_fields
from ssmseg.data.io import sha256_file
from ssmseg.data.pairing import no_match
from ssmseg.data.prepare import PrepResult, reuse_or_claim
from ssmseg.errors import ConfigError, InputError


def _units(sources: list[FieldSource], mode: str, block: int) -> list[tuple]:
    """One unit key per field: fields with the same key share pixels and must share a split."""
    keys = []
    for s, src in enumerate(sources):
        for j in range(len(src.fields)):
            if mode == "sources":
                keys.append((s,))
            elif mode == "random" or not src.where:
                keys.append((s, j))
            else:
                r, c = src.where[j]
                keys.append((s, r // block, c // block))
    return keys


def _read_sources(cfg: Config) -> list[FieldSource]:
    fp = cfg.prep.fields
    paths: set[str] = set()
    for pattern in cfg.prep.images:
        hits = [h for h in (glob.glob(pattern) if glob.has_magic(pattern) else [pattern]) if Path(h).is_file()]
        if not hits:
            raise no_match(pattern, "images")
        paths.update(hits)
    return read_field_sources(sorted(paths), fp.size, fp.mode, fp.key, band_axis=cfg.prep.band_axis)


def prepare_fields(cfg: Config, out: Path, force: bool = False, synthetic: bool = False) -> PrepResult:
    """Write the field dataset ``out``; nothing is written when any input is bad."""
    out, fp, sp = Path(out), cfg.prep.fields, cfg.prep.split
    if synthetic:
        fields = sinusoid_fields(fp.count, fp.size or 32, fp.channels, fp.n_terms, fp.max_cycles, fp.seed)
        sources = [FieldSource("sinusoids", fields, [])]
        hashes = ["sinusoids"]
    else:
        if not cfg.prep.images:
            raise ConfigError("prep.images is empty: list the field files (images, rasters, .npy/.npz stacks)")
        sources = _read_sources(cfg)
        hashes = [sha256_file(src.path) for src in sources]
    settings = {
        "fields": fp.model_dump(mode="json"),
        "split": sp.model_dump(mode="json"),
        "synthetic": synthetic,
        "images": cfg.prep.images,
    }
    digest = hashlib.sha256(
        json.dumps({"settings": settings, "sources": hashes, "format": mf.FORMAT_VERSION}, sort_keys=True).encode()
    ).hexdigest()
    done = reuse_or_claim(out, digest, force)
    if done is not None:
        return done
    notes = [
        f"'{src.path}': {src.dropped} of {src.tiles} tiles touch nodata or NaN pixels and were left out"
        for src in sources
        if src.dropped
    ]
    fields = np.concatenate([src.fields for src in sources])
    if len(fields) < 3:
        where = ", ".join(f"'{src.path}'" for src in sources[:3]) + (", ..." if len(sources) > 3 else "")
        raise InputError(
            f"only {len(fields)} fields from {where}; a dataset needs at least 3 (train, val, test): "
            "add files or use a smaller prep.fields.size"
        )
    block = max(1, (sp.block_size or 2 * fields.shape[-1]) // fields.shape[-1])
    mode = "random" if synthetic and sp.mode == "blocks" else sp.mode
    keys = _units(sources, mode, block)
    split, fold = _assign(keys, sp.ratios, sp.folds, sp.seed, mode)
    stats = {"train": field_stats(fields[split == "train"]).to_dict()}
    for k in range(sp.folds):
        part = (fold >= 0) & (fold != k)
        if part.any():
            stats[f"fold_{k}"] = field_stats(fields[part]).to_dict()
    origin = [(s, j) for s, src in enumerate(sources) for j in range(len(src.fields))]
    manifest: dict[str, Any] = {
        "format": mf.FORMAT_VERSION,
        "task": "reconstruction",
        "count": len(fields),
        "channels": int(fields.shape[1]),
        "size": [int(fields.shape[2]), int(fields.shape[3])],
        "mode": fp.mode,
        "synthetic": synthetic,
        "input_hash": digest,
        "sources": [
            {"path": src.path, "sha256": h, "fields": len(src.fields), "dropped_nodata_tiles": src.dropped}
            for src, h in zip(sources, hashes, strict=True)
        ],
        "split": {**sp.model_dump(mode="json"), "mode": "random" if synthetic else sp.mode},
        "counts": {part: int((split == part).sum()) for part in ("train", "val", "test")},
        "fields": [
            {"source": s, "index": j, "split": str(split[i]), "fold": int(fold[i])} for i, (s, j) in enumerate(origin)
        ],
        "stats": stats,
    }
    with outputs.staged(out) as tmp:
        np.save(tmp / "fields.npy", fields)
        mf.write(tmp, manifest)
        outputs.publish(tmp, out, "dataset", digest, about=f"ssmseg prep, {len(fields)} fields", force=True)
    return PrepResult(out, False, manifest, notes)


def _assign(keys: list[tuple], ratios, folds: int, seed: int, mode: str = "blocks") -> tuple[np.ndarray, np.ndarray]:
    """Units shuffled by ``seed`` and cut by the ratios; folds dealt round-robin over non-test units."""
    units = sorted(set(keys))
    if len(units) < 3:
        fix = {
            "sources": "add files (each whole file is one unit), or use prep.split.mode blocks or random",
            "blocks": "use a smaller prep.split.block_size, add files, or prep.split.mode random for independent "
            "fields",
        }.get(mode, "add fields")
        raise InputError(
            f"the fields form only {len(units)} independent unit(s) (prep.split.mode {mode}); "
            f"splitting needs at least 3: {fix}"
        )
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
