"""The built-in dataset: a procedurally generated, georeferenced scene that needs spectrum *and* context.

Classes are irregular regions (the arg-max of smoothed noise fields, not stripes). Each class has a smooth
spectral signature; pixels near borders mix neighbouring spectra; a smooth illumination field and noise
are added. Two classes ("crop" and "grass") share one mean spectrum and differ only in texture (crop rows),
so a per-pixel spectral classifier cannot separate them and a model must look at context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from ssmseg import geotiff

CLASSES = ["water", "grass", "soil", "urban", "crop"]
CRS = "EPSG:32633"
ORIGIN = (500000.0, 4500000.0)
PIXEL = 10.0
VERSION = 1


def _spectra(bands: int, rng: np.random.Generator) -> np.ndarray:
    """(classes, bands) reflectance-like signatures in [0.02, 0.8]."""
    grid = np.linspace(0, 1, bands)
    bumps = {  # centre, width, height of a few absorption/reflection features per class
        "water": [(0.1, 0.15, 0.10)],
        "grass": [(0.35, 0.05, 0.10), (0.75, 0.2, 0.45)],
        "soil": [(0.6, 0.4, 0.30)],
        "urban": [(0.5, 0.6, 0.25), (0.2, 0.05, 0.08)],
    }
    out = []
    for name in CLASSES:
        spec = np.full(bands, 0.04)
        for c, w, h in bumps.get(name, bumps["grass"]):  # crop shares grass's signature
            spec += h * np.exp(-0.5 * ((grid - c) / w) ** 2)
        out.append(spec)
    return np.clip(np.array(out) + rng.normal(0, 0.005, (len(CLASSES), bands)), 0.02, 0.8)


def generate(kind: str, size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image (bands, size, size) uint16 or uint8, labels (size, size) uint8)."""
    rng = np.random.default_rng(seed)
    bands = 32 if kind == "hyperspectral" else 3
    fields = gaussian_filter(rng.normal(size=(len(CLASSES), size, size)), sigma=(0, size / 20, size / 20))
    labels = fields.argmax(0).astype(np.uint8)
    onehot = np.eye(len(CLASSES))[labels].transpose(2, 0, 1)
    abundance = gaussian_filter(onehot, sigma=(0, 1.2, 1.2))  # mixing at borders
    abundance /= abundance.sum(0, keepdims=True)
    spectra = _spectra(bands, rng)
    if kind == "rgb":
        spectra = spectra[:, [int(bands_i) for bands_i in np.linspace(0, spectra.shape[1] - 1, 3)]]
    image = np.einsum("khw,kb->bhw", abundance, spectra)
    rows = np.arange(size)[:, None] * np.ones((1, size))
    texture = 1.0 + 0.35 * np.sin(2 * np.pi * rows / 4.0)  # crop rows: context, not spectrum
    image *= np.where(labels == CLASSES.index("crop"), texture, 1.0)[None]
    illumination = 1.0 + 0.15 * gaussian_filter(rng.normal(size=(size, size)), size / 8) / 0.05
    image *= np.clip(illumination, 0.7, 1.3)[None]
    image += rng.normal(0, 0.01, image.shape)
    if kind == "rgb":
        return np.clip(image * 255 / 0.8, 0, 255).astype(np.uint8), labels
    return np.clip(image * 10000, 0, 65535).astype(np.uint16), labels


def write_scene(kind: str, folder: Path, size: int = 256, seed: int = 0) -> tuple[Path, Path]:
    """Write image/scene.tif and mask/scene.tif (GeoTIFF, real CRS and transform) once; returns their paths."""
    import rasterio
    from rasterio.transform import from_origin

    folder = Path(folder)
    image_path, mask_path = folder / "image" / "scene.tif", folder / "mask" / "scene.tif"
    if image_path.is_file() and mask_path.is_file():
        return image_path, mask_path
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    image, labels = generate(kind, size, seed)
    profile = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "crs": CRS,
        "transform": from_origin(*ORIGIN, PIXEL, PIXEL),
        "tiled": True,
        "blockxsize": 64,
        "blockysize": 64,
    }
    for path, data in ((mask_path, labels[None]), (image_path, image)):
        tmp = path.with_suffix(".tmp.tif")
        with geotiff.written(tmp), rasterio.open(tmp, "w", count=data.shape[0], dtype=data.dtype, **profile) as dst:
            dst.write(data)
        tmp.replace(path)
    return image_path, mask_path


def synthetic_prep_settings(kind: str, cache: Path) -> dict:
    """The prep section that prepares the synthetic scene (written into ``cache`` if needed)."""
    image, mask = write_scene(kind, cache / "synthetic" / f"{kind}-v{VERSION}")
    return {"images": [str(image)], "masks": [str(mask)], "classes": CLASSES, "class_map": None, "palette": None}
