"""``ssmseg prep``: scenes -> a dataset folder (manifest.json + patch arrays), leak-free and reproducible.

Patches are written patch by patch to ``images.npy`` (P, bands, c, c), ``labels.npy`` (P, c, c) uint8 and
``valid.npy`` (P, c, c) uint8, so ``train`` reads them at memory speed and normalises on load with the
statistics of the fold it trains on. The folder is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg import outputs
from ssmseg.config.schema import Config
from ssmseg.data import manifest as mf
from ssmseg.data.io import Source, raster_env, sha256_file, window_transform
from ssmseg.data.labels import color_hex
from ssmseg.data.npyfile import NpyPatches, NpyWriter
from ssmseg.data.pairing import crs_note, find_pairs, label_mapping, open_pair, unknown_error, unknown_values
from ssmseg.data.splits import (
    SPLITS,
    apply_buffer,
    assign_folds,
    assign_splits,
    cover_folds,
    find_leaks,
    untrainable,
)
from ssmseg.data.stats import SAMPLE_TARGET, BandStats
from ssmseg.data.tiling import Block, block_problem, make_blocks, overlap_pixels, owned_windows
from ssmseg.errors import ConfigError, InputError
from ssmseg.progress import progress_bar


@dataclass
class PrepResult:
    out: Path
    up_to_date: bool
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _pad(data: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Reflect-pad (bands, h, w) at the bottom/right to (bands, crop, crop); also the inside-scene mask."""
    h, w = data.shape[1:]
    inside = np.zeros((crop, crop), bool)
    inside[:h, :w] = True
    if (h, w) != (crop, crop):
        data = np.pad(data, ((0, 0), (0, crop - h), (0, crop - w)), mode="reflect" if min(h, w) > 1 else "edge")
    return data, inside


def read_window(src: Source, row: int, col: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(bands, crop, crop) data for a window that may run past the scene's bottom/right edge, and the
    (crop, crop) mask of pixels inside the scene."""
    h, w = min(crop, src.info.height - row), min(crop, src.info.width - col)
    return _pad(src.read(row, col, h, w), crop)


class StripReader:
    """Windows of one scene read a strip of rows at a time: one read serves every window starting on
    that row (windows are visited row by row), far faster than a read per window; memory is one strip."""

    def __init__(self, src: Source, crop: int) -> None:
        self.src, self.crop, self.row, self.strip = src, crop, None, None

    def window(self, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
        info = self.src.info
        if row != self.row:
            self.row = row
            self.strip = self.src.read(row, 0, min(self.crop, info.height - row), info.width)
        return _pad(self.strip[:, :, col : col + min(self.crop, info.width - col)], self.crop)


# Prep keys added after format 2, left out of the hash at their defaults: datasets prepared before them stay
# "up to date" instead of asking for --force.
LATER_KEYS = {"rows_key": None, "cols_key": None, "flat_order": "column", "labels_from": "values", "overlap_px": None}


def input_hash(cfg: Config, sources: list[str]) -> str:
    """Content hash of everything that determines the output: source bytes and the prep settings."""
    settings = cfg.prep.model_dump(mode="json", exclude={"out"})
    for key, default in LATER_KEYS.items():
        if settings.get(key) == default:
            settings.pop(key)
    if not settings["split"].get("test"):
        settings["split"].pop("test", None)
    settings["crop_size"] = cfg.data.crop_size
    payload = json.dumps({"settings": settings, "sources": sources, "format": mf.FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def reuse_or_claim(out: Path, digest: str, force: bool) -> PrepResult | None:
    """The finished dataset at ``out`` when it was prepared from these inputs (``digest``), else None after
    claiming ``out``: only a dataset that prep wrote is ever replaced (with ``force`` when its inputs differ);
    anything else is refused."""
    existing = mf.read_if_complete(out)
    if existing is not None and existing.get("input_hash") == digest:
        return PrepResult(out, True, existing)
    outputs.claim(
        out,
        "dataset",
        digest,
        force,
        mismatch=f"'{out}' holds a dataset prepared from other inputs; "
        "pass --force to replace it or choose another --out",
    )
    return None


def prepare(cfg: Config, out: Path, force: bool = False) -> PrepResult:
    """Write the dataset folder ``out`` from ``cfg.prep``; nothing is written when any input is bad."""
    with raster_env(), contextlib.ExitStack() as stack:
        return _prepare(cfg, Path(out), force, stack)


def _prepare(cfg: Config, out: Path, force: bool, stack: contextlib.ExitStack) -> PrepResult:
    prep, crop = cfg.prep, cfg.data.crop_size
    problem = block_problem(prep.split.block_size, crop)
    if problem:
        raise ConfigError(problem)
    pairs = find_pairs(prep)
    opened = []
    for pair in pairs:
        opened.append(open_pair(pair, prep))
        for src in opened[-1]:
            stack.callback(src.close)  # closed on every way out, early returns and errors included
    images, masks = [i for i, _ in opened], [m for _, m in opened]
    for img in images:
        if img.info.height < crop or img.info.width < crop:
            raise InputError(
                f"'{img.info.path}' is {img.info.height}x{img.info.width}, smaller than data.crop_size {crop}; "
                "use a smaller crop"
            )
    hashes = [sha256_file(p) for pair in pairs for p in (pair.image, pair.mask)]
    digest = input_hash(cfg, hashes)
    done = reuse_or_claim(out, digest, force)
    if done is not None:
        return done
    mapping = label_mapping(prep, masks)
    unknown = unknown_values(mapping, masks)
    if unknown:
        raise unknown_error(unknown, mapping, {m.info.path for m in masks if m.lossy})

    held_out = held_out_sources(prep.split.test, pairs)
    overlap = overlap_pixels(prep.overlap, crop, prep.overlap_px)
    stride = crop - overlap
    mode = prep.split.mode
    units: list[Block] = []
    windows: list[tuple[int, int, int]] = []  # (source, row, col) per patch
    owned: list[tuple[int, int]] = []  # rows and columns from the top-left that the patch owns (counted once)
    unit_of: list[int] = []
    for s, img in enumerate(images):
        h, w = img.info.height, img.info.width
        size = (prep.split.block_size or 2 * crop) if mode == "blocks" else max(h, w)
        for block in make_blocks(s, h, w, size):
            for r, c, oh, ow in owned_windows(block, crop, stride, h, w, prep.edge):
                if mode == "random" or not units or units[-1] is not block:
                    units.append(block)
                unit_of.append(len(units) - 1)
                windows.append((s, r, c))
                owned.append((oh, ow))
    if not windows:
        raise InputError("no crop fits the scenes; use edge: pad or a smaller data.crop_size")
    order = sorted(range(len(windows)), key=lambda i: windows[i])  # row by row: one strip read per row
    windows, unit_of, owned = [windows[i] for i in order], [unit_of[i] for i in order], [owned[i] for i in order]
    forced = np.array([u.source in held_out for u in units], bool)

    with outputs.staged(out) as tmp:
        manifest, notes = _write(cfg, tmp, images, masks, mapping, windows, owned, unit_of, forced, overlap)
        note = crs_note(images)
        if note:
            notes.insert(0, note)
        sources = [
            {
                "image": {**img.info.to_dict(), "sha256": hashes[2 * k]},
                "mask": {**msk.info.to_dict(), "sha256": hashes[2 * k + 1]},
            }
            for k, (img, msk) in enumerate(opened)
        ]
        manifest.update(input_hash=digest, sources=sources)
        mf.write(tmp, manifest)
        outputs.publish(tmp, out, "dataset", digest, about=f"ssmseg prep, {len(windows)} patches", force=True)
    return PrepResult(out, False, manifest, notes)


def held_out_sources(patterns: list[str], pairs: list) -> set[int]:
    """Indices of the pairs whose image (or mask) matches one of prep.split.test's files or globs."""
    held: set[int] = set()
    for pattern in patterns:
        hits = (
            {str(Path(h).resolve()) for h in glob.glob(pattern, recursive=True)}
            if glob.has_magic(pattern)
            else {str(Path(pattern).resolve())}
        )
        matched = {k for k, pair in enumerate(pairs) if {str(pair.image.resolve()), str(pair.mask.resolve())} & hits}
        if not matched:
            raise InputError(
                f"prep.split.test: '{pattern}' matches none of the images in prep.images (or their "
                "masks); give an image file or a glob that matches one"
            )
        held |= matched
    if held and len(held) == len(pairs):
        raise InputError(f"prep.split.test holds every scene ({len(pairs)}); leave some for training and validation")
    return held


def _write(cfg, tmp, images, masks, mapping, windows, owned, unit_of, forced, overlap):
    prep, crop = cfg.prep, cfg.data.crop_size
    n_units = len(forced)
    n, bands = len(windows), images[0].info.bands
    if any(i.info.bands != bands for i in images):
        raise InputError("the images have different band counts; prepare them as separate datasets")
    dtypes = {i.info.dtype for i in images}
    dtype = dtypes.pop() if len(dtypes) == 1 and dtypes != {"float64"} else "float32"
    Xw = NpyWriter(tmp / "images.npy", dtype, n, (bands, crop, crop))
    Yw = NpyWriter(tmp / "labels.npy", np.uint8, n, (crop, crop))
    Vw = NpyWriter(tmp / "valid.npy", np.uint8, n, (crop, crop))
    n_classes = len(mapping.classes)
    unit_counts = np.zeros((n_units, n_classes), dtype=np.int64)
    img_strips = [StripReader(src, crop) for src in images]
    msk_strips = [StripReader(src, crop) for src in masks]
    with progress_bar("cutting patches", n) as advance:
        for i, (s, r, c) in enumerate(windows):
            img, inside = img_strips[s].window(r, c)
            msk, _ = msk_strips[s].window(r, c)
            labels, _ = mapping.decode(msk, masks[s].info.path)
            nodata = prep.nodata if prep.nodata is not None else images[s].info.nodata
            valid = inside & ~np.isnan(img).any(0) if img.dtype.kind == "f" else inside.copy()
            if nodata is not None:
                valid &= ~(img == nodata).all(0)
            labels[~valid] = mapping.ignore_index
            Xw.append(np.where(valid, img, 0))
            Yw.append(labels)
            Vw.append(valid)
            own = labels[: owned[i][0], : owned[i][1]]  # overlapping windows: each pixel is counted once
            unit_counts[unit_of[i]] += np.bincount(own[own != mapping.ignore_index], minlength=n_classes)[:n_classes]
            advance()
    for w in (Xw, Yw, Vw):
        w.close()
    X, Y, V = (NpyPatches(tmp / f"{k}.npy") for k in ("images", "labels", "valid"))
    unit_split = np.full(n_units, SPLITS.index("test"))  # held-out scenes (prep.split.test) are test as a whole
    mode = prep.split.mode
    unit_split[~forced] = assign_splits(unit_counts[~forced], prep.split.ratios, prep.split.seed, mode)
    unit_fold = assign_folds(unit_counts, unit_split, prep.split.folds, prep.split.seed, mode)
    # every fold's training part holds every class found outside the fold, as far as the data allows
    unit_split = cover_folds(unit_counts, unit_split, unit_fold, prep.split.folds, prep.split.seed, prep.split.ratios)
    patches = [
        {
            "source": s,
            "window": [r, c, crop, crop],
            "own": list(owned[i]),
            "block": unit_of[i],
            "split": SPLITS[unit_split[unit_of[i]]],
            "fold": int(unit_fold[unit_of[i]]),
            "transform": window_transform(images[s].info.transform, r, c),
        }
        for i, (s, r, c) in enumerate(windows)
    ]
    notes = []
    buffer = overlap if prep.split.buffer is None else prep.split.buffer
    if prep.split.mode != "random":
        apply_buffer(patches, Y, buffer, mapping.ignore_index)
    leaks = find_leaks(patches, Y, mapping.ignore_index)
    if leaks and prep.split.mode == "random":
        notes.append(f"split.mode random: {len(leaks)} val/test patches overlap training patches (leakage)")
    elif leaks:
        raise RuntimeError(f"internal error: spatial split leaks ({leaks[0]})")
    counts, cv_train = _class_counts(patches, Y, n_classes, prep.split.folds, mapping.ignore_index)
    wanted = [r > 0 for r in prep.split.ratios]
    wanted[SPLITS.index("test")] |= bool(forced.any())
    for split in SPLITS:
        if wanted[SPLITS.index(split)]:
            missing = [mapping.classes[k] for k in range(n_classes) if counts[split][k] == 0]
            if missing:
                notes.append(f"classes missing from the {split} split: {', '.join(missing)}")
    heldout = {f: counts[f"fold_{f}"] for f in range(prep.split.folds)}
    notes += untrainable(mapping.classes, {f: cv_train[f"fold_{f}"] for f in heldout}, heldout)
    try:
        _check_splits(patches, counts, prep, wanted, notes)
        stats = _stats(patches, X, V, prep.split.folds, prep.split.seed)
    finally:
        for arr in (X, Y, V):
            arr.close()
    manifest = {
        "format": mf.FORMAT_VERSION,
        "crop_size": crop,
        "bands": bands,
        "band_names": images[0].info.descriptions,
        "dtype": dtype,
        "classes": mapping.classes,
        "palette": [color_hex(c) for c in mapping.palette],
        "labels": {
            "kind": mapping.kind,
            "values": {str(k): v for k, v in mapping.values.items()},
            "ignored": sorted(mapping.ignored),
        },
        "ignore_index": mapping.ignore_index,
        "normalize": prep.normalize,
        "split": {**prep.split.model_dump(mode="json"), "buffer": buffer, "overlap": overlap},
        "class_counts": counts,
        "cv_train_counts": cv_train,
        "stats": stats,
        "patches": patches,
        "prep": prep.model_dump(mode="json"),
    }
    return manifest, notes


def _check_splits(patches, counts, prep, wanted, notes) -> None:
    """A split that is asked for (a share above 0) must get patches with labelled pixels: without them training
    learns nothing, validation measures nothing and test metrics are empty. Refused before anything is kept."""
    n_blocks = len({p["block"] for p in patches})
    if not sum(sum(counts[split]) for split in SPLITS):
        raise InputError(
            "the masks hold no labelled pixel inside the image's valid data: every value is ignored "
            "(prep.ignore_values/ignore_colors) or the image is nodata there; check the masks and the "
            "class settings"
        )
    for k, split in enumerate(SPLITS):
        if not wanted[k]:
            continue
        has_patches = any(p["split"] == split for p in patches)
        if not has_patches or not sum(counts[split]):
            what = "got no patches" if not has_patches else "holds no labelled pixel"
            raise InputError(
                f"the {split} split {what} ({n_blocks} blocks for shares {list(prep.split.ratios)}"
                f"{', after the buffer around training windows' if has_patches else ''}); use a smaller "
                "prep.split.block_size or prep.split.buffer, larger or more scenes, or other prep.split.ratios"
            )
    empty = [f for f in range(prep.split.folds) if not sum(counts.get(f"fold_{f}", []))]
    if empty:
        notes.append(
            f"cv folds {', '.join(map(str, empty))} hold no labelled pixel: `ssmseg cv` will refuse this "
            "dataset (plain training works); use a smaller prep.split.block_size or fewer folds"
        )


def _class_counts(patches, Y, n_classes, folds, ignore):
    """Labelled pixels per class of each split and fold (``class_counts``), and of each fold's cv training part,
    the train split outside fold k (``cv_train_counts``, keyed fold_k)."""
    counts = {k: np.zeros(n_classes, np.int64) for k in [*SPLITS, *(f"fold_{f}" for f in range(folds))]}
    cv_train = {f"fold_{f}": np.zeros(n_classes, np.int64) for f in range(folds)}
    for i, p in enumerate(patches):
        lab = Y[i][: p["own"][0], : p["own"][1]]  # owned pixels: overlapping windows count each pixel once
        binc = np.bincount(lab[lab != ignore], minlength=n_classes)[:n_classes]
        counts[p["split"]] += binc
        if p["fold"] >= 0:
            counts[f"fold_{p['fold']}"] += binc
            if p["split"] == "train":
                for f in range(folds):
                    if f != p["fold"]:
                        cv_train[f"fold_{f}"] += binc
    return {k: v.tolist() for k, v in counts.items()}, {k: v.tolist() for k, v in cv_train.items()}


def _stats(patches, X, V, folds, seed):
    """Statistics from training patches only: 'train' for train/eval, 'fold_k' for cv fold k."""
    per_patch = max(1, SAMPLE_TARGET // max(len(patches), 1))  # the percentile sample stays bounded
    bands = X.patch_shape[0]
    sets = {"train": BandStats(bands, per_patch, seed)}
    sets.update({f"fold_{k}": BandStats(bands, per_patch, seed + k + 1) for k in range(folds)})
    with progress_bar("statistics", len(patches)) as advance:
        for i, p in enumerate(patches):
            oh, ow = p["own"]  # owned pixels only: overlapping windows count each pixel once
            image, valid = X[i][:, :oh, :ow], V[i][:oh, :ow].astype(bool)
            targets = ["train"] if p["split"] == "train" else []
            targets += [f"fold_{k}" for k in range(folds) if p["fold"] >= 0 and p["fold"] != k]
            if targets:
                summary = sets[targets[0]].summarise(image, valid)
                for t in targets:
                    sets[t].merge(summary)
            advance()
    return {k: v.result() for k, v in sets.items()}
