"""The task, data and dataset-preparation sections (``task``, ``data``, ``prep``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ssmseg.config.sections.base import Section


class TaskConfig(Section):
    """What is being predicted."""

    name: Literal["segmentation", "reconstruction"] = Field(
        "segmentation",
        description="segmentation: per-pixel classes; reconstruction: a dense field from sparse pixels.",
    )


class DataConfig(Section):
    """Where the data comes from and how it is batched."""

    dataset: Path | None = Field(
        None,
        description="Prepared dataset folder (from `ssmseg prep`). Empty: the built-in synthetic dataset.",
    )
    synthetic: Literal["hyperspectral", "rgb", "sinusoids"] = Field(
        "hyperspectral",
        description="Built-in synthetic data used when `dataset` is empty: a hyperspectral or rgb scene "
        "(segmentation), or sinusoid fields (reconstruction; chosen automatically for task.name reconstruction).",
    )
    crop_size: int = Field(
        64,
        ge=8,
        description="Patch side in pixels (a prepared dataset's own size is what runs and is recorded; for "
        "reconstruction, the fields' side).",
    )
    batch_size: int = Field(8, ge=1, description="Patches per optimisation step and process.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes (0 loads in the main one).")
    max_patches: int | None = Field(
        None, ge=1, description="Cap on training patches drawn per epoch (the fast mode); empty: all."
    )
    max_val_patches: int | None = Field(
        None,
        ge=1,
        description="Cap on validation patches (fields): one fixed subset, drawn once with seed 0 and used every "
        "epoch, bounds the cost of validation; empty: all.",
    )
    balance: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Segmentation: class-balanced patch sampling. 0: each epoch is a permutation of the training "
        "patches; 1: each draw picks a class uniformly, then a patch in proportion to its pixels of that class "
        "(rare classes seen as often as common ones; with replacement); between: a mixture of the two.",
    )


class SplitConfig(Section):
    """How patches are assigned to train/val/test and to cross-validation folds, without leakage."""

    mode: Literal["blocks", "sources", "random"] = Field(
        "blocks",
        description="blocks: spatial blocks per scene; sources: whole files; random: per patch (warns on overlap).",
    )
    ratios: tuple[float, float, float] = Field((0.6, 0.2, 0.2), description="Train, val and test shares (sum 1).")
    block_size: int | None = Field(
        None, ge=8, description="Side of the spatial blocks in pixels (at least the crop size); empty: 2 crops."
    )
    buffer: int | None = Field(
        None,
        ge=0,
        description="Pixels of a val/test patch within this distance of a training window are ignored; "
        "empty: the overlap in pixels.",
    )
    folds: int = Field(3, ge=2, description="Cross-validation folds assigned over the non-test blocks.")
    seed: int = Field(
        0,
        ge=0,
        description="Seed of the block assignment. The assignment is a stratified fill (rarest class first, the "
        "unit holding most of it); the seed only breaks ties between equal units, so on a small scene other seeds "
        "can give the same split (Salinas-A: seeds 0, 1 and 2 do).",
    )
    test: list[str] = Field(
        [],
        description="Image files or glob patterns whose whole scenes go to the test split (held-out scenes); "
        "the other sources are split as configured.",
    )


class FieldsPrepConfig(Section):
    """`ssmseg prep` for reconstruction (task.name: reconstruction): fields from files or generated sinusoids."""

    size: int | None = Field(
        None,
        ge=8,
        le=1024,
        description="Field side in pixels: files are cut into non-overlapping tiles of this size (edge remainders "
        "dropped); empty: every file holds whole fields of one size (sinusoids: 32).",
    )
    mode: Literal["bands", "channels", "gray"] = Field(
        "bands",
        description="Multi-band images: one field per band (bands), the bands as channels of one field (channels), "
        "or one grayscale field of the luminance 0.299 R + 0.587 G + 0.114 B (gray; RGB photos).",
    )
    key: str | None = Field(None, description="Array name inside .npz/.mat files (empty: the only array).")
    count: int = Field(1000, ge=10, description="Sinusoids: number of generated fields.")
    n_terms: int = Field(4, ge=1, le=64, description="Sinusoids: 2D sinusoids summed per field.")
    max_cycles: float = Field(4.0, gt=0, description="Sinusoids: most cycles of any term across the field.")
    channels: int = Field(1, ge=1, le=16, description="Sinusoids: channels per field.")
    seed: int = Field(0, ge=0, description="Sinusoids: generator seed.")


class PrepConfig(Section):
    """`ssmseg prep`: from source scenes to a dataset folder of normalised-on-load patches."""

    images: list[str] = Field([], description="Image files or glob patterns (GeoTIFF, TIFF, JPEG/PNG, .mat, .npy).")
    masks: list[str] = Field(
        [],
        description="Mask files or glob patterns, paired with images by file stem; files of the same name in "
        "several folders (tile_1/images/x.jpg, tile_1/masks/x.png) pair by their nearest common folder.",
    )
    pair_pattern: str | None = Field(
        None,
        description="Regex whose groups (joined by '/') are the pairing key; searched in the file name, or in the "
        r"whole path when it contains '/', e.g. '(tile_\d+)/\w+/(.+)\.\w+$'; empty: the file stem.",
    )
    reader: Literal["auto", "rasterio", "tifffile"] = Field(
        "auto", description="TIFF reader: rasterio (GDAL, windowed, georeferenced) or tifffile; auto: rasterio."
    )
    image_key: str | None = Field(None, description="Array name inside .mat files (empty: the only array).")
    mask_key: str | None = Field(None, description="Array name inside mask .mat files (empty: the only array).")
    band_axis: int | None = Field(
        None, description="Band axis of .mat/.npy cubes; empty: the axis that is not one of two equal-sized ones."
    )
    rows_key: str | None = Field(
        None,
        description="Flattened .mat cubes (bands, pixels): name of the scalar holding the row count; empty: "
        "found by name (nRow, nrows, rows, height, lines, ...).",
    )
    cols_key: str | None = Field(
        None, description="Flattened .mat cubes: name of the scalar holding the column count; empty: found by name."
    )
    flat_order: Literal["column", "row"] = Field(
        "column",
        description="Pixel order of flattened cubes: column (MATLAB's column-major, as distributed) or row.",
    )
    labels_from: Literal["values", "argmax"] = Field(
        "values",
        description="values: the mask holds class values; argmax: it holds per-class maps (abundances, "
        "probabilities; (classes, H, W), (H, W, classes) or flattened) and the class is the largest.",
    )
    palette: dict[str, str] | None = Field(
        None, description='RGB masks: colour to class name, e.g. {"#3C1098": building}; in class order.'
    )
    classes: list[str] | None = Field(None, description="Class names for index masks, in class-index order.")
    class_map: dict[int, int] | None = Field(
        None, description="Remap raw mask values to class indices, e.g. {1: 0, 10: 1}; unmapped values are errors."
    )
    ignore_values: list[int] = Field([], description="Raw mask values that become the ignore index.")
    ignore_colors: list[str] = Field([], description="Mask colours that become the ignore index (RGB masks).")
    ignore_index: int = Field(255, ge=0, le=255, description="Label of ignored pixels in the prepared dataset.")
    nodata: float | None = Field(None, description="Image nodata value; empty: the value stored in the raster.")
    overlap: float = Field(
        0.0,
        ge=0,
        description="Overlap between neighbouring crops as a fraction of the crop, in [0, 1) (0.25: a "
        "quarter of the crop); for a number of pixels use prep.overlap_px.",
    )
    overlap_px: int | None = Field(
        None,
        ge=0,
        description="Overlap between neighbouring crops in pixels (instead of prep.overlap); empty: "
        "prep.overlap decides.",
    )
    edge: Literal["pad", "drop"] = Field(
        "pad", description="Crops past the scene edge: pad (reflect; labels ignored) or drop."
    )
    normalize: Literal["minmax", "zscore", "percentile"] = Field(
        "zscore", description="Normalisation applied on load with statistics from training patches only."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Train/val/test split and folds.")
    fields: FieldsPrepConfig = Field(
        default_factory=FieldsPrepConfig, description="Reconstruction datasets: field size, layout, sinusoids."
    )
    out: Path | None = Field(None, description="Dataset folder to write; empty: data.dataset.")
