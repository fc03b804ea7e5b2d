"""``ssmseg prep --check``: everything prep would refuse, found without writing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssmseg.config.schema import Config
from ssmseg.data import manifest as mf
from ssmseg.data.io import raster_env
from ssmseg.data.pairing import (
    crs_note,
    find_pairs,
    label_mapping,
    mask_strips,
    open_pair,
    unknown_error,
    unknown_values,
)
from ssmseg.data.prepare import read_window
from ssmseg.data.splits import find_leaks
from ssmseg.data.tiling import block_problem, block_windows, make_blocks, overlap_pixels
from ssmseg.errors import InputError


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_sources(cfg: Config) -> CheckReport:
    """Readable files, image/mask pairs, sizes, CRS, class values, palette colours, empty patches."""
    with raster_env():
        return _check_sources(cfg)


def _check_sources(cfg: Config) -> CheckReport:
    report = CheckReport()
    problem = block_problem(cfg.prep.split.block_size, cfg.data.crop_size)
    if problem:
        report.problems.append(problem)
    try:
        pairs = find_pairs(cfg.prep)
    except InputError as exc:
        report.problems.append(str(exc))
        return report
    opened = []
    for pair in pairs:
        try:
            opened.append(open_pair(pair, cfg.prep))
        except InputError as exc:
            report.problems.append(str(exc))
    if not opened:
        return report
    crop = cfg.data.crop_size
    masks = [m for _, m in opened]
    try:
        mapping = label_mapping(cfg.prep, masks)
    except InputError as exc:
        report.problems.append(str(exc))
        return report
    fix = "prep.palette or prep.ignore_colors" if mapping.kind == "rgb" else "prep.class_map or prep.ignore_values"
    lossy = {m.info.path for m in masks if m.lossy}
    try:
        unknown = unknown_values(mapping, masks)
    except InputError as exc:  # a mask that cannot be decoded at all (named in the message)
        report.problems.append(str(exc))
        return report
    for path, values in unknown.items():
        if path in lossy or Path(path).suffix.lower() in (".jpg", ".jpeg"):
            report.problems.append(str(unknown_error({path: values}, mapping, lossy)))
            continue
        listed = ", ".join(f"{v}: {n} px" for v, n in values.items())
        report.problems.append(f"'{path}': values matching no class ({listed}); add them to {fix}")
    stride = crop - overlap_pixels(cfg.prep.overlap, crop, cfg.prep.overlap_px)
    for image, mask in opened:
        try:
            _check_scene(image, mask, mapping, crop, stride, report)
        finally:
            image.close()
            mask.close()
    note = crs_note([i for i, _ in opened])
    if note:
        report.notes.append(note)
    report.notes.append(f"{len(opened)} image/mask pairs, {len(mapping.classes)} classes: {', '.join(mapping.classes)}")
    return report


def _check_scene(image, mask, mapping, crop: int, stride: int, report: CheckReport) -> None:
    h, w = image.info.height, image.info.width
    if h < crop or w < crop:
        report.problems.append(f"'{image.info.path}' ({h}x{w}) is smaller than data.crop_size {crop}")
        return
    try:  # every pixel prep would read: a truncated or damaged image is found here, not halfway through prep
        for _ in mask_strips(image):
            pass
    except InputError as exc:
        report.problems.append(str(exc))
        return
    empty = 0
    windows = [rc for b in make_blocks(0, h, w, max(h, w)) for rc in block_windows(b, crop, stride, h, w, "pad")]
    for r, c in windows:
        labels, _ = mapping.decode(read_window(mask, r, c, crop)[0], mask.info.path)
        if (labels == mapping.ignore_index).all():
            empty += 1
    if empty:
        report.notes.append(f"'{image.info.path}': {empty} of {len(windows)} crops hold no labelled pixel")


def check_dataset(folder: Path) -> CheckReport:
    """A prepared folder: complete, arrays consistent with the manifest, and no split leakage."""
    report = CheckReport()
    try:
        manifest = mf.load(folder)
    except InputError as exc:
        report.problems.append(str(exc))
        return report
    labels = np.load(Path(folder) / "labels.npy", mmap_mode="r")
    if len(labels) != len(manifest["patches"]):
        report.problems.append(f"labels.npy holds {len(labels)} patches, the manifest {len(manifest['patches'])}")
        return report
    leaks = find_leaks(manifest["patches"], labels, manifest["ignore_index"])
    (report.notes if manifest["split"]["mode"] == "random" else report.problems).extend(leaks[:5])
    report.notes.append(f"{len(labels)} patches, {len(manifest['classes'])} classes, {len(leaks)} leaking patches")
    return report
