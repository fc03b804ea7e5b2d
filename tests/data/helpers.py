"""Tiny georeferenced test scenes (real CRS and transform), as torchgeo's tests make them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from ssmseg.config import Config, build_config

TRANSFORM = from_origin(300000.0, 4200000.0, 30.0, 30.0)


def write_tif(path: Path, array: np.ndarray, crs: str | None = "EPSG:32618", nodata=None, transform=TRANSFORM) -> Path:
    array = array if array.ndim == 3 else array[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": array.shape[1],
        "width": array.shape[2],
        "count": array.shape[0],
        "dtype": array.dtype,
        "nodata": nodata,
    }
    if crs:
        profile.update(crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def scene(tmp: Path, name: str = "a", size: int = 48, bands: int = 3, seed: int = 0, **kw) -> tuple[Path, Path]:
    """An image with 3 classes in vertical bands of blocks, values depending on the class."""
    rng = np.random.default_rng(seed)
    labels = ((np.arange(size)[None, :] // 8 + np.arange(size)[:, None] // 8) % 3).astype(np.uint8)
    image = (labels[None] * 100 + rng.integers(0, 20, (bands, size, size))).astype(np.uint16)
    return write_tif(tmp / "img" / f"{name}.tif", image, **kw), write_tif(tmp / "msk" / f"{name}.tif", labels, **kw)


def prep_config(tmp: Path, crop: int = 16, **prep) -> Config:
    settings = {
        "images": [str(tmp / "img" / "*.tif")],
        "masks": [str(tmp / "msk" / "*.tif")],
        "classes": ["c0", "c1", "c2"],
        "split": {"block_size": crop, "folds": 2},
    }
    settings.update(prep)
    return build_config(explicit={"data": {"crop_size": crop}, "prep": settings})
