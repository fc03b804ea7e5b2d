"""Reading scenes: GeoTIFF and other GDAL rasters (windowed, via rasterio), plain TIFF (tifffile),
JPEG/PNG, MATLAB ``.mat`` cubes (v5 via scipy, v7.3 via h5py) and ``.npy`` arrays.

Every reader gives a ``Source``: ``info`` (bands, height, width, dtype, CRS, transform, nodata) and
``read(row, col, h, w) -> (bands, h, w)`` for a window inside the scene. Sources are opened read-only.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg.errors import InputError

GDAL_CACHE_BYTES = 64 * 2**20
RASTERIO_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".jp2", ".img", ".vrt"}


@dataclass
class SourceInfo:
    """What the manifest records about one source file."""

    path: str
    bands: int
    height: int
    width: int
    dtype: str
    crs: str | None = None
    transform: list[float] | None = None  # affine a, b, c, d, e, f (x = a col + b row + c)
    nodata: float | None = None
    sha256: str | None = None
    descriptions: list[str] | None = None  # band names, when the file has them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Source:
    """A scene of shape (bands, height, width) read window by window."""

    info: SourceInfo
    lossy = False  # stored with lossy compression (JPEG): values at edges are not the values that were saved

    def read(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RasterioSource(Source):
    """Any GDAL raster; windowed reads, so a scene is never loaded whole."""

    def __init__(self, path: Path) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._ds = rasterio.open(path)
        except RasterioIOError as exc:
            raise InputError(f"cannot read raster '{path}' ({exc}); check that it is a valid image file") from exc
        ds = self._ds
        georef = ds.crs is not None
        self.info = SourceInfo(
            path=str(path),
            bands=ds.count,
            height=ds.height,
            width=ds.width,
            dtype=str(ds.dtypes[0]),
            crs=ds.crs.to_string() if georef else None,
            transform=list(ds.transform)[:6] if georef else None,
            nodata=None if ds.nodata is None else float(ds.nodata),
            descriptions=list(ds.descriptions) if any(ds.descriptions) else None,
        )
        compression = getattr(ds.compression, "name", str(ds.compression or "")).lower()
        self.lossy = ds.driver in ("JPEG", "JP2OpenJPEG", "WEBP") or compression in ("jpeg", "ojpeg", "webp")

    def read(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        try:
            return self._ds.read(window=Window(col, row, w, h))
        except RasterioError as exc:  # a truncated or damaged file opens but fails where its data is missing
            raise InputError(
                f"cannot read '{self.info.path}' at rows {row}-{row + h} ({str(exc).split('. ')[0]}); the file is "
                "truncated or damaged: copy or export it again"
            ) from exc

    def close(self) -> None:
        self._ds.close()


class ArraySource(Source):
    """An in-memory or memory-mapped (bands, height, width) array."""

    def __init__(self, path: Path, array: np.ndarray) -> None:
        self._a = array
        self.info = SourceInfo(str(path), array.shape[0], array.shape[1], array.shape[2], str(array.dtype))

    def read(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        return np.asarray(self._a[:, row : row + h, col : col + w])


def band_first(array: np.ndarray, path: Path, band_axis: int | None, spatial: tuple[int, int] | None) -> np.ndarray:
    """A 2D or 3D array as (bands, H, W). The band axis is given, or found from the mask's (H, W), or is the
    one axis that is not one of two equal-sized ones; otherwise the caller must say."""
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise InputError(f"'{path}' holds a {array.ndim}-D array; expected a 2-D image or a 3-D cube")
    if band_axis is None:
        shape = array.shape
        candidates = []
        if spatial is not None:
            candidates = [ax for ax in range(3) if tuple(s for i, s in enumerate(shape) if i != ax) == spatial]
        if not candidates:
            equal = [(i, j) for i in range(3) for j in range(i + 1, 3) if shape[i] == shape[j]]
            candidates = [3 - sum(equal[0])] if len(equal) == 1 else []
        if len(candidates) != 1:
            raise InputError(
                f"cannot tell the band axis of '{path}' with shape {shape}; set prep.band_axis (0, 1 or 2)"
            )
        band_axis = candidates[0]
    return np.moveaxis(array, band_axis, 0)


def _load_mat(path: Path, key: str | None) -> np.ndarray:
    try:
        import scipy.io

        data = scipy.io.loadmat(path)
        arrays = {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        try:
            import h5py
        except ImportError as exc:
            raise InputError(
                f"'{path}' is a MATLAB v7.3 (HDF5) file; install h5py (pip install 'ssmseg[hdf5]')"
            ) from exc
        with h5py.File(path, "r") as f:
            # HDF5 stores MATLAB's column-major arrays with the axes reversed.
            arrays = {k: np.asarray(f[k]).T for k in f if hasattr(f[k], "shape")}
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read MATLAB file '{path}' ({exc}); check the file") from exc
    if key is None:
        if len(arrays) != 1:
            raise InputError(f"'{path}' holds arrays {sorted(arrays)}; set prep.image_key/mask_key to one of them")
        return next(iter(arrays.values()))
    if key not in arrays:
        raise InputError(f"'{path}' has no array '{key}'; it holds {sorted(arrays)}")
    return arrays[key]


def open_source(
    path: str | Path,
    reader: str = "auto",
    key: str | None = None,
    band_axis: int | None = None,
    spatial: tuple[int, int] | None = None,
) -> Source:
    """Open any supported scene read-only. ``spatial`` (H, W) helps find a cube's band axis."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"'{path}' does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except ValueError as exc:
            raise InputError(f"cannot read '{path}' ({exc}); check the file") from exc
        return ArraySource(path, band_first(array, path, band_axis, spatial))
    if suffix == ".mat":
        return ArraySource(path, band_first(_load_mat(path, key), path, band_axis, spatial))
    if suffix in (".tif", ".tiff") and reader == "tifffile":
        import tifffile

        try:
            array = tifffile.memmap(path, mode="r")
        except (ValueError, tifffile.TiffFileError):
            try:
                array = tifffile.imread(path)
            except Exception as exc:
                raise InputError(f"cannot read TIFF '{path}' ({exc}); check the file") from exc
        if array.ndim == 3 and array.shape[-1] <= 4 < array.shape[0]:  # (H, W, C) interleaved
            band_axis = 2 if band_axis is None else band_axis
        return ArraySource(path, band_first(array, path, band_axis, spatial))
    if suffix in RASTERIO_SUFFIXES:
        return RasterioSource(path)
    raise InputError(f"'{path}': unsupported file type '{suffix}'; use GeoTIFF, TIFF, JPEG, PNG, .mat or .npy")


def raster_env() -> Any:
    """GDAL settings for reading scenes: GDAL's block cache defaults to 5% of RAM, but every block is read
    once here, so a small cache suffices and keeps memory independent of the scene size."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Streaming sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def window_transform(transform: list[float] | None, row: int, col: int) -> list[float] | None:
    """The affine transform of a window whose top-left pixel is (row, col)."""
    if transform is None:
        return None
    a, b, c, d, e, f = transform
    return [a, b, c + a * col + b * row, d, e, f + d * col + e * row]
