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
        from rasterio.enums import ColorInterp
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
        self.colormap = None  # {index: (r, g, b, a)} of a palette-indexed one-band raster
        if ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette:
            try:
                self.colormap = ds.colormap(1)
            except ValueError:  # declared a palette but holds no table
                self.colormap = None

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


class PaletteSource(Source):
    """A palette-indexed one-band raster read as the (3, h, w) RGB colours of its colour table."""

    def __init__(self, src: Source, colormap: dict[int, tuple[int, ...]]) -> None:
        self.src, self.lossy = src, src.lossy
        self.info = SourceInfo(**{**src.info.to_dict(), "bands": 3, "dtype": "uint8"})
        self.lut = np.zeros((256, 3), np.uint8)
        for index, rgba in colormap.items():
            if 0 <= index < 256:
                self.lut[index] = rgba[:3]

    def read(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        index = self.src.read(row, col, h, w)[0]
        return np.moveaxis(self.lut[index.astype(np.int64).clip(0, 255)], -1, 0)

    def close(self) -> None:
        self.src.close()


class ArgmaxSource(Source):
    """Per-class maps (abundances, probabilities) of shape (classes, h, w) read as the (1, h, w) index of the
    largest; NaN counts as the smallest."""

    def __init__(self, src: Source) -> None:
        if src.info.bands > 255:
            raise InputError(
                f"'{src.info.path}' holds {src.info.bands} class maps; prep.labels_from: argmax takes at most 255"
            )
        self.src, self.lossy = src, src.lossy
        self.info = SourceInfo(**{**src.info.to_dict(), "bands": 1, "dtype": "uint8"})

    def read(self, row: int, col: int, h: int, w: int) -> np.ndarray:
        maps = self.src.read(row, col, h, w)
        if maps.dtype.kind == "f":
            maps = np.where(np.isnan(maps), -np.inf, maps)
        return maps.argmax(0).astype(np.uint8)[None]

    def close(self) -> None:
        self.src.close()


class NeedsSceneSize(InputError):
    """An array whose layout can only be read knowing the scene's (H, W): the caller opens the other file of
    the pair first and asks again with ``spatial``."""


ROW_NAMES = ("nrow", "nrows", "rows", "row", "nr", "height", "lines", "nlines", "h")
COL_NAMES = ("ncol", "ncols", "cols", "col", "nc", "width", "samples", "nsamples", "w")


@dataclass
class Flat:
    """How flattened (bands, pixels) cubes are stored: names of the row/column scalars and the pixel order."""

    rows_key: str | None = None
    cols_key: str | None = None
    order: str = "column"  # MATLAB's column-major, as such files are distributed; or row
    required: bool = True  # named keys must exist (the image); a mask's size may come from its image instead


def unflatten(array: np.ndarray, path: Path, size: tuple[int, int], order: str) -> np.ndarray:
    """(bands, H*W) or (H*W, bands) -> (bands, H, W), pixels in column-major (MATLAB) or row-major order."""
    rows, cols = size
    if array.shape[0] == rows * cols and array.shape[1] != rows * cols:
        array = array.T
    if array.shape[1] != rows * cols:
        raise InputError(
            f"'{path}' holds a {array.shape[0]}x{array.shape[1]} array, not {rows}x{cols} = "
            f"{rows * cols} pixels per band; check prep.rows_key/cols_key"
        )
    if order == "column":
        return np.swapaxes(array.reshape(array.shape[0], cols, rows), 1, 2)
    return array.reshape(array.shape[0], rows, cols)


def _scalar(value: Any) -> int | None:
    a = np.asarray(value)
    if a.size != 1 or a.dtype.kind not in "iuf":
        return None
    v = float(a.reshape(-1)[0])
    return int(v) if v.is_integer() and v > 0 else None


def _size_from(arrays: dict[str, np.ndarray], path: Path, flat: Flat) -> tuple[int, int] | None:
    """(rows, cols) from scalar variables beside a flattened cube: named by prep.rows_key/cols_key, or found."""
    found = []
    for key, names, what in ((flat.rows_key, ROW_NAMES, "rows_key"), (flat.cols_key, COL_NAMES, "cols_key")):
        if key is not None and (flat.required or key in arrays):
            if key not in arrays or _scalar(arrays[key]) is None:
                raise InputError(f"prep.{what}: '{path}' has no scalar '{key}'; it holds {sorted(arrays)}")
            found.append(_scalar(arrays[key]))
            continue
        hits = [k for k in arrays if k.lower() in names and _scalar(arrays[k]) is not None]
        found.append(_scalar(arrays[hits[0]]) if len(hits) == 1 else None)
    return (found[0], found[1]) if None not in found else None


def _fits(shape: tuple[int, ...], size: tuple[int, int] | None) -> bool:
    """Whether an array of ``shape`` can be a scene of (rows, cols): flattened, or with both axes."""
    if size is None or len(shape) < 2:
        return False
    if len(shape) == 2:
        return size[0] * size[1] in shape or tuple(shape) == tuple(size)
    return all(n in shape for n in size)


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


def _mat_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        import scipy.io

        data = scipy.io.loadmat(path)
        return {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        try:
            import h5py
        except ImportError as exc:
            raise InputError(
                f"'{path}' is a MATLAB v7.3 (HDF5) file; install h5py (pip install 'ssmseg[hdf5]')"
            ) from exc
        with h5py.File(path, "r") as f:
            # HDF5 stores MATLAB's column-major arrays with the axes reversed.
            return {k: np.asarray(f[k]).T for k in f if hasattr(f[k], "shape")}
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read MATLAB file '{path}' ({exc}); check the file") from exc


def _load_mat(path: Path, key: str | None, flat: Flat | None = None, spatial: tuple[int, int] | None = None):
    """(array, (rows, cols) of a flattened cube or None). Without a key: the only array, or the only one that
    fits the scene's size (from row/column scalars in the file, or ``spatial``)."""
    arrays = _mat_arrays(path)
    size = _size_from(arrays, path, flat or Flat())
    if key is None:
        numeric = {k: v for k, v in arrays.items() if v.dtype.kind in "iufb" and v.size > 1}
        if len(numeric) == 1:
            key = next(iter(numeric))
        else:
            fitting = [k for k, v in numeric.items() if _fits(v.shape, size or spatial)]
            if len(fitting) != 1:
                error = NeedsSceneSize if spatial is None and size is None and len(numeric) > 1 else InputError
                raise error(f"'{path}' holds arrays {sorted(arrays)}; set prep.image_key/mask_key to one of them")
            key = fitting[0]
    if key not in arrays:
        raise InputError(f"'{path}' has no array '{key}'; it holds {sorted(arrays)}")
    return arrays[key], size


def _as_scene(
    array: np.ndarray,
    path: Path,
    band_axis: int | None,
    spatial: tuple[int, int] | None,
    flat: Flat | None,
    size: tuple[int, int] | None = None,
    maps: bool = False,
) -> np.ndarray:
    """A 2-D image, a 3-D cube or a flattened (bands, pixels) cube as (bands, H, W). ``maps``: a 2-D array
    is per-class maps, so it must be flattened (its size comes from the file or ``spatial``)."""
    if array.ndim == 2:
        size = size or (spatial if spatial is not None and tuple(array.shape) != tuple(spatial) else None)
        if size is not None and size[0] * size[1] in array.shape:
            return unflatten(array, path, size, (flat or Flat()).order)
        if maps:
            raise NeedsSceneSize(
                f"'{path}' holds a {array.shape[0]}x{array.shape[1]} array, not per-class maps of "
                "a known scene size; give rows/columns (prep.rows_key/cols_key)"
            )
    try:
        return band_first(array, path, band_axis, spatial)
    except InputError as exc:
        raise (NeedsSceneSize(str(exc)) if spatial is None else exc) from None


def open_source(
    path: str | Path,
    reader: str = "auto",
    key: str | None = None,
    band_axis: int | None = None,
    spatial: tuple[int, int] | None = None,
    flat: Flat | None = None,
    maps: bool = False,
) -> Source:
    """Open any supported scene read-only. ``spatial`` (H, W) helps find a cube's band axis and unflatten
    (bands, pixels) arrays; ``flat`` says how flattened .mat cubes are stored; ``maps``: the file holds
    per-class maps (a 2-D array is then a flattened one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"'{path}' does not exist; check the path")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, mmap_mode="r")
        except ValueError as exc:
            raise InputError(f"cannot read '{path}' ({exc}); check the file") from exc
        return ArraySource(path, _as_scene(array, path, band_axis, spatial, flat, maps=maps))
    if suffix == ".mat":
        array, size = _load_mat(path, key, flat, spatial)
        return ArraySource(path, _as_scene(array, path, band_axis, spatial, flat, size, maps))
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
