"""Dense 2D fields for sparse-field reconstruction: synthetic sinusoid sums, fields read from files, the
observed-pixel masks, and value statistics.

Every field set is a float32 array ``(N, C, H, W)``. Masks are bool ``(N, H, W)``: True where a pixel is
observed (shared by all channels of a field). Validation/test masks come from ``observed_masks``, which
draws field ``i``'s mask from ``(seed, i)`` alone, so every run and every baseline sees the same pixels;
training masks come from ``observed_masks_torch`` and a ``torch.Generator`` on any device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ssmseg.data.io import open_source
from ssmseg.errors import ConfigError, InputError

FieldMode = Literal["bands", "channels", "gray"]
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance of R, G, B
STACK_SUFFIXES = (".npy", ".npz")


# ---------------------------------------------------------------------------------------------------------------
# Synthetic fields


def sinusoid_fields(
    n: int, size: int, channels: int = 1, n_terms: int = 4, max_cycles: float = 4.0, seed: int = 0
) -> np.ndarray:
    """(n, channels, size, size) float32 random sums of ``n_terms`` 2D sinusoids, each field (all its
    channels together) scaled to [0, 1].

    Each term has a random direction, a frequency between 0.5 and ``max_cycles`` cycles across the field,
    a random phase and an amplitude in [0.5, 1]. Field ``i`` depends only on ``(seed, i)``: the first k
    fields are the same whatever ``n`` is.
    """
    if n < 0 or size < 2 or channels < 1 or n_terms < 1:
        raise ConfigError(
            f"sinusoid_fields needs n >= 0, size >= 2, channels >= 1, n_terms >= 1; got "
            f"n={n}, size={size}, channels={channels}, n_terms={n_terms}"
        )
    if not 0.5 <= max_cycles <= size / 2:
        raise ConfigError(f"max_cycles must lie in [0.5, size/2 = {size / 2}] (Nyquist); got {max_cycles}")
    coords = np.arange(size) / size
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    out = np.empty((n, channels, size, size), dtype=np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        field = np.zeros((channels, size, size))
        for c in range(channels):
            cycles = rng.uniform(0.5, max_cycles, n_terms)
            angle = rng.uniform(0, 2 * np.pi, n_terms)
            phase = rng.uniform(0, 2 * np.pi, n_terms)
            amp = rng.uniform(0.5, 1.0, n_terms)
            for k in range(n_terms):
                ky, kx = cycles[k] * np.sin(angle[k]), cycles[k] * np.cos(angle[k])
                field[c] += amp[k] * np.sin(2 * np.pi * (ky * yy + kx * xx) + phase[k])
        lo, hi = field.min(), field.max()
        out[i] = (field - lo) / (hi - lo)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Fields from files


def _tiles(array: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) -> (N * rows * cols, C, size, size): non-overlapping tiles, row-major, the remainder at
    the right and bottom edges dropped."""
    n, c, h, w = array.shape
    rows, cols = h // size, w // size
    cut = array[:, :, : rows * size, : cols * size].reshape(n, c, rows, size, cols, size)
    return cut.transpose(0, 2, 4, 1, 3, 5).reshape(n * rows * cols, c, size, size)


def read_stack(path: str | Path, key: str | None = None) -> np.ndarray:
    """A ``.npy``/``.npz`` stack of fields, (N, H, W) or (N, C, H, W), as float32 (N, C, H, W).
    An ``.npz`` with several arrays needs ``key``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"'{path}' does not exist; check the field file path")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path) as data:
                if key is None and len(data.files) != 1:
                    raise InputError(f"'{path}' holds arrays {sorted(data.files)}; name one with key")
                name = key if key is not None else data.files[0]
                if name not in data.files:
                    raise InputError(f"'{path}' has no array '{name}'; it holds {sorted(data.files)}")
                array = data[name]
        else:
            array = np.load(path)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read '{path}' ({exc}); save a numeric (N, H, W) or (N, C, H, W) array") from exc
    if array.dtype.kind not in "biuf":
        raise InputError(f"'{path}' holds {array.dtype} values; fields must be numeric")
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise InputError(f"'{path}' holds an array of shape {array.shape}; expected (N, H, W) or (N, C, H, W)")
    return array.astype(np.float32)


def read_image(
    path: str | Path, mode: FieldMode = "bands", key: str | None = None, band_axis: int | None = None
) -> np.ndarray:
    """An image or raster (GeoTIFF/TIFF/JPEG/PNG/.mat/.npy image, via ``open_source``) as float32
    (N, C, H, W): one single-channel field per band (``mode="bands"``), one field with the bands as
    channels (``mode="channels"``), or one grayscale field (``mode="gray"``: the luminance
    0.299 R + 0.587 G + 0.114 B of the first three bands; a single-band image is kept as it is). Pixels
    equal to the file's nodata value become NaN (in gray mode, where any of the three bands is nodata).
    ``band_axis``: a cube's band axis when its shape does not tell (a .mat cube of 83 x 86 x 204: 2)."""
    if mode not in ("bands", "channels", "gray"):
        raise ConfigError(f"field mode must be 'bands', 'channels' or 'gray'; got '{mode}'")
    with open_source(path, key=key, band_axis=band_axis) as src:
        info = src.info
        image = src.read(0, 0, info.height, info.width).astype(np.float32)
    if info.nodata is not None:
        image[image == np.float32(info.nodata)] = np.nan
    if mode == "gray":
        if image.shape[0] == 1:
            return image[None]
        if image.shape[0] < 3:
            raise InputError(
                f"'{path}' has {image.shape[0]} bands; gray fields need one band or R, G, B first; "
                "use prep.fields.mode bands"
            )
        image = np.tensordot(np.asarray(LUMA, np.float32), image[:3], axes=1)[None].astype(np.float32)
    return image[:, None] if mode == "bands" else image[None]


@dataclass
class FieldSource:
    """The fields of one file: ``fields`` float32 (N, C, H, W); ``where`` each tile's (row, col) in pixels
    (empty without tiling); ``dropped`` tiles left out because they touch nodata/NaN pixels, of ``tiles``."""

    path: str
    fields: np.ndarray
    where: list[tuple[int, int]]
    dropped: int = 0
    tiles: int = 0


def read_field_sources(
    paths: list[str | Path] | str | Path,
    size: int | None = None,
    mode: FieldMode = "bands",
    key: str | None = None,
    skip_nodata: bool = True,
    band_axis: int | None = None,
) -> list[FieldSource]:
    """The fields of each file, in the order of ``paths`` (the rules of ``read_fields``), each with its tiles'
    positions and how many tiles were dropped for nodata. A file left with no field, or holding NaN that no rule
    drops, is an InputError naming it and the cause; fields of different shapes are one too."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if mode not in ("bands", "channels", "gray"):
        raise ConfigError(f"field mode must be 'bands', 'channels' or 'gray'; got '{mode}'")
    if size is not None and size < 2:
        raise ConfigError(f"field size must be at least 2; got {size}")
    out: list[FieldSource] = []
    for path in paths:
        path = Path(path)
        stack = path.suffix.lower() in STACK_SUFFIXES
        array = read_stack(path, key) if stack else read_image(path, mode, key, band_axis)
        where: list[tuple[int, int]] = []
        dropped = tiles = 0
        if size is not None:
            if array.shape[2] < size or array.shape[3] < size:
                raise InputError(
                    f"'{path}' has {array.shape[2]}x{array.shape[3]} fields, smaller than the "
                    f"{size}x{size} tiles asked for; use a smaller size or drop the file"
                )
            rows, cols = array.shape[2] // size, array.shape[3] // size
            where = [(r * size, c * size) for _ in range(len(array)) for r in range(rows) for c in range(cols)]
            array = _tiles(array, size)
            tiles = len(array)
            if skip_nodata and not stack:  # a nodata border is not a field
                keep = ~np.isnan(array).any(axis=(1, 2, 3))
                dropped = int((~keep).sum())
                array, where = array[keep], [w for w, k in zip(where, keep, strict=True) if k]
                if not len(array):
                    raise InputError(
                        f"'{path}': all {tiles} tiles of {size}x{size} touch nodata or NaN pixels, so it "
                        "gives no field; check the file's nodata value, or use a smaller tile size "
                        "(prep.fields.size) or drop the file"
                    )
        if not stack and size is None and np.isnan(array).any():
            raise InputError(
                f"'{path}' holds nodata or NaN pixels ({int(np.isnan(array).sum())} values); set a "
                "tile size (prep.fields.size) to cut it into tiles (tiles touching nodata are left "
                "out) or fill them first"
            )
        check_finite(array, f"'{path}'")
        out.append(FieldSource(str(path), array, where, dropped, tiles))
    shapes = {s.fields.shape[1:] for s in out}
    if len(shapes) > 1:
        listing = "; ".join(f"{s.path}: {'x'.join(map(str, s.fields.shape[1:]))} (CxHxW)" for s in out[:4])
        raise InputError(
            f"fields of different shapes in one set ({listing}); give a tile size (prep.fields.size) "
            "to cut them all into equal tiles, or use files of one size and band count"
        )
    return out


def read_fields(
    paths: list[str | Path] | str | Path,
    size: int | None = None,
    mode: FieldMode = "bands",
    key: str | None = None,
    skip_nodata: bool = True,
) -> np.ndarray:
    """Fields from files as one float32 (N, C, H, W) set, in the order of ``paths``.

    ``.npy``/``.npz`` files are stacks (N, H, W) or (N, C, H, W) (``read_stack``); every other file is an
    image (``read_image``; a 3-D ``.npy`` image must then be opened with ``read_image``). With ``size``,
    every field is cut into non-overlapping ``size`` x ``size`` tiles (edge remainders dropped); that is the
    only resize rule, so without it all fields must already share one size. Tiles of a raster holding one of
    its nodata pixels are dropped when ``skip_nodata`` (a nodata border is not a field). Any NaN left (in a
    stack, or nodata without tiling) is an InputError.
    """
    sources = read_field_sources(paths, size, mode, key, skip_nodata)
    if not sources:
        return np.zeros((0, 1, size or 1, size or 1), np.float32)
    return np.concatenate([s.fields for s in sources])


def check_finite(fields: np.ndarray, where: str = "fields") -> None:
    """InputError naming the first field with a NaN or infinite value."""
    bad = ~np.isfinite(fields).all(axis=tuple(range(1, fields.ndim)))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"field {first} of {where} holds NaN or infinite values ({int(bad.sum())} such fields); "
            "fill or drop them before use"
        )


def scale_to_unit(fields: np.ndarray, drop_constant: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each field (all its channels together) scaled to [0, 1]; returns (scaled, kept indices).

    A constant field cannot be scaled: it is an InputError unless ``drop_constant``, which drops it."""
    lo = fields.min(axis=(1, 2, 3), keepdims=True)
    span = fields.max(axis=(1, 2, 3), keepdims=True) - lo
    constant = span.reshape(-1) == 0
    if constant.any() and not drop_constant:
        first = int(np.flatnonzero(constant)[0])
        raise InputError(
            f"field {first} is constant ({int(constant.sum())} constant fields) and cannot be scaled "
            "to [0, 1]; drop them (drop_constant=True) or use larger tiles"
        )
    keep = np.flatnonzero(~constant)
    scaled = (fields[keep] - lo[keep]) / span[keep]
    return scaled.astype(np.float32), keep


# ---------------------------------------------------------------------------------------------------------------
# Observed pixels


def _fraction_range(fraction: float | tuple[float, float]) -> tuple[float, float]:
    lo, hi = (fraction, fraction) if isinstance(fraction, (int, float)) else tuple(fraction)
    if not (0 < lo <= hi < 1):
        raise ConfigError(
            f"observed fraction must lie in (0, 1) (a number or a (low, high) range with low <= high); got {fraction}"
        )
    return float(lo), float(hi)


def observed_count(fraction: float, pixels: int) -> int:
    """Observed pixels for a fraction: rounded, at least 1 observed and 1 unobserved."""
    return int(min(max(round(fraction * pixels), 1), pixels - 1))


def observed_masks(
    n: int, h: int, w: int, fraction: float | tuple[float, float], seed: int, first_index: int = 0
) -> np.ndarray:
    """bool (n, h, w), True where observed, for fields ``first_index .. first_index + n - 1``.

    Field ``i``'s fraction is drawn uniformly in the range (or fixed), then that many pixels are drawn
    without replacement; both come from ``(seed, i)`` alone, so fixed validation/test masks are the same in
    every run, in every batch split, and for every baseline."""
    lo, hi = _fraction_range(fraction)
    if h * w < 2:
        raise ConfigError(f"a field needs at least 2 pixels to have observed and unobserved ones; got {h}x{w}")
    out = np.zeros((n, h * w), dtype=bool)
    for j in range(n):
        rng = np.random.default_rng([seed, first_index + j])
        k = observed_count(rng.uniform(lo, hi) if hi > lo else lo, h * w)
        out[j, rng.choice(h * w, k, replace=False)] = True
    return out.reshape(n, h, w)


def observed_masks_torch(
    n: int, h: int, w: int, fraction: float | tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """bool (n, h, w) on the generator's device, for training: like ``observed_masks`` (fraction drawn per
    field in the range, pixels without replacement, at least 1 observed and 1 unobserved) but drawn from
    ``generator``."""
    lo, hi = _fraction_range(fraction)
    pixels = h * w
    if pixels < 2:
        raise ConfigError(f"a field needs at least 2 pixels to have observed and unobserved ones; got {h}x{w}")
    device = generator.device
    frac = lo + (hi - lo) * torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    k = torch.round(frac * pixels).clamp(1, pixels - 1).long()
    order = torch.rand(n, pixels, generator=generator, device=device).argsort(dim=1)
    first_k = torch.arange(pixels, device=device)[None] < k[:, None]
    return torch.zeros(n, pixels, dtype=torch.bool, device=device).scatter(1, order, first_k).reshape(n, h, w)


# ---------------------------------------------------------------------------------------------------------------
# Value statistics (training fields only) and normalisation


@dataclass(frozen=True)
class FieldStats:
    """Per-channel min, max, mean and std of the training fields. ``data_range`` (max of max minus min of
    min) is the MAX of PSNR."""

    min: tuple[float, ...]
    max: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: int

    @property
    def data_range(self) -> float:
        return float(max(self.max) - min(self.min))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FieldStats:
        return cls(tuple(d["min"]), tuple(d["max"]), tuple(d["mean"]), tuple(d["std"]), int(d["pixels"]))


def field_stats(train_fields: np.ndarray) -> FieldStats:
    """Statistics of the training fields (N, C, H, W) only; never pass validation or test fields."""
    if train_fields.ndim != 4 or train_fields.shape[0] == 0:
        raise InputError(f"field statistics need a non-empty (N, C, H, W) training set; got {train_fields.shape}")
    check_finite(train_fields, "the training fields")
    x = train_fields.astype(np.float64)
    std = x.std(axis=(0, 2, 3))
    if (std == 0).any():
        raise InputError(
            f"training fields are constant in channel(s) {np.flatnonzero(std == 0).tolist()}; "
            "they cannot be normalised: check the data"
        )
    return FieldStats(
        tuple(x.min(axis=(0, 2, 3)).tolist()),
        tuple(x.max(axis=(0, 2, 3)).tolist()),
        tuple(x.mean(axis=(0, 2, 3)).tolist()),
        tuple(std.tolist()),
        int(x.shape[0] * x.shape[2] * x.shape[3]),
    )


def _per_channel(values: tuple[float, ...], like: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    shape = (len(values), 1, 1)
    if isinstance(like, torch.Tensor):
        return torch.tensor(values, dtype=like.dtype, device=like.device).reshape(shape)
    return np.asarray(values, dtype=like.dtype if like.dtype.kind == "f" else np.float32).reshape(shape)


def normalize(x: np.ndarray | torch.Tensor, stats: FieldStats) -> np.ndarray | torch.Tensor:
    """(x - mean) / std per channel; x is (..., C, H, W), numpy or torch."""
    return (x - _per_channel(stats.mean, x)) / _per_channel(stats.std, x)


def denormalize(z: np.ndarray | torch.Tensor, stats: FieldStats) -> np.ndarray | torch.Tensor:
    """The inverse of ``normalize``."""
    return z * _per_channel(stats.std, z) + _per_channel(stats.mean, z)
