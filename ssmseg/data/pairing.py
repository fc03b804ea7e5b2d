"""Finding the scenes: expand patterns, pair images with masks by name, open and cross-check them."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ssmseg.config.schema import PrepConfig
from ssmseg.data.io import ArgmaxSource, Flat, NeedsSceneSize, PaletteSource, Source, open_source
from ssmseg.data.labels import LabelMapping, build_mapping
from ssmseg.errors import InputError

STRIP_PIXELS = 1 << 20  # masks are scanned in strips of about this many pixels: bounded memory for any scene


@dataclass
class Pair:
    key: str
    image: Path
    mask: Path


def no_match(pattern: str, what: str) -> InputError:
    """The error for a ``prep.<what>`` pattern matching nothing: a relative one names the folder it was tried in
    (presets name their data relative to the dataset's own folder)."""
    where = "" if Path(pattern).is_absolute() else f" under the current folder {Path.cwd()}"
    return InputError(
        f"prep.{what}: '{pattern}' matches no file{where}; run prep from the folder the pattern is relative to, "
        f"or set prep.{what} to where the files are, e.g. --set 'prep.{what}=[\"/path/to/{pattern}\"]'"
    )


def expand(patterns: list[str], what: str) -> list[Path]:
    """Files matching each pattern (a plain path must exist); sorted, without duplicates."""
    found: dict[str, Path] = {}
    for pattern in patterns:
        hits = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        hits = [h for h in hits if Path(h).is_file()]
        if not hits:
            raise no_match(pattern, what)
        for h in hits:
            found.setdefault(str(Path(h).resolve()), Path(h))
    return list(found.values())


def pair_key(path: Path, pattern: str | None) -> str:
    """The file stem, or the groups of ``pattern`` joined by '/' (searched in the whole path when the pattern
    holds a '/', else in the file name)."""
    if pattern is None:
        return path.stem
    where = path.as_posix() if "/" in pattern else path.name
    try:
        match = re.search(pattern, where)
    except re.error as exc:
        raise InputError(f"prep.pair_pattern '{pattern}' is not a valid regex ({exc}); fix it") from None
    groups = [g for g in match.groups() if g is not None] if match else []
    if not groups:
        raise InputError(f"prep.pair_pattern '{pattern}' has no group matching '{where}'; adjust the regex")
    return "/".join(groups)


def _shared_depth(a: Path, b: Path) -> int:
    """How many leading folders two files' (absolute) paths share."""
    n = 0
    for x, y in zip(a.resolve().parent.parts, b.resolve().parent.parts, strict=False):
        if x != y:
            break
        n += 1
    return n


def find_pairs(prep: PrepConfig) -> list[Pair]:
    """Every image with its mask, matched by key (the file stem, or prep.pair_pattern's groups). Files of the
    same name in several folders (tile_1/images/x.jpg, tile_1/masks/x.png, tile_2/...) pair with the mask whose
    path shares the most folders with the image's."""
    if not prep.images:
        raise InputError("no images given; set prep.images (files or glob patterns), or use --synthetic")
    if not prep.masks:
        raise InputError("no masks given; set prep.masks (files or glob patterns) to pair with prep.images")
    images = expand(prep.images, "images")
    masks: dict[str, list[Path]] = {}
    for m in expand(prep.masks, "masks"):
        masks.setdefault(pair_key(m, prep.pair_pattern), []).append(m)
    pairs, taken = [], {}
    for image in images:
        key = pair_key(image, prep.pair_pattern)
        candidates = masks.get(key, [])
        if not candidates:
            raise InputError(
                f"image '{image}' has no mask (key '{key}' not among prep.masks); add its mask or set prep.pair_pattern"
            )
        depth = [_shared_depth(image, m) for m in candidates]
        best = [m for m, d in zip(candidates, depth, strict=True) if d == max(depth)]
        if len(best) > 1:
            raise InputError(
                f"image '{image}' matches masks '{best[0]}' and '{best[1]}' equally (key '{key}'); set "
                "prep.pair_pattern to a regex over the path, e.g. '(tile_\\d+)/\\w+/(.+)\\.\\w+$'"
            )
        mask = best[0]
        if str(mask) in taken:
            raise InputError(
                f"images '{taken[str(mask)]}' and '{image}' both pair with mask '{mask}'; give each image its own "
                "mask or set prep.pair_pattern"
            )
        taken[str(mask)] = image
        pairs.append(Pair(key, image, mask))
    extra = [m for group in masks.values() for m in group if str(m) not in taken]
    if extra:
        raise InputError(f"mask '{extra[0]}' has no image; add its image to prep.images or remove the mask")
    return pairs


def open_pair(pair: Pair, prep: PrepConfig) -> tuple[Source, Source]:
    """Open image and mask; sizes and CRS must agree. The mask is opened first (its size tells a cube's band
    axis), unless its layout needs the scene's size (flattened per-class maps): then the image first."""
    flat = Flat(prep.rows_key, prep.cols_key, prep.flat_order)
    maps = prep.labels_from == "argmax"

    def _mask(spatial: tuple[int, int] | None) -> Source:
        return open_source(pair.mask, prep.reader, prep.mask_key, None, spatial, replace(flat, required=False), maps)

    def _image(spatial: tuple[int, int] | None) -> Source:
        return open_source(pair.image, prep.reader, prep.image_key, prep.band_axis, spatial, flat)

    try:
        mask = _mask(None)
    except NeedsSceneSize:
        image = _image(None)
        mask = _mask((image.info.height, image.info.width))
    else:
        image = _image((mask.info.height, mask.info.width))
    if maps:
        mask = ArgmaxSource(mask)
    elif prep.palette and getattr(mask, "colormap", None):
        mask = PaletteSource(mask, mask.colormap)  # palette-indexed PNG/GeoTIFF: decoded through its table
    spatial = (mask.info.height, mask.info.width)
    if (image.info.height, image.info.width) != spatial:
        raise InputError(
            f"'{pair.image}' is {image.info.height}x{image.info.width} but its mask '{pair.mask}' is "
            f"{spatial[0]}x{spatial[1]}; give the matching mask"
        )
    if image.info.crs and mask.info.crs and image.info.crs != mask.info.crs:
        raise InputError(
            f"'{pair.image}' ({image.info.crs}) and '{pair.mask}' ({mask.info.crs}) have different CRS; reproject one"
        )
    return image, mask


def crs_note(images: list[Source]) -> str | None:
    """One note for every scene without a CRS (a folder of JPEG tiles would otherwise give one per file)."""
    missing = [i.info.path for i in images if i.info.crs is None]
    if not missing:
        return None
    n = len(missing)
    which = f"'{missing[0]}' has" if n == 1 else f"{n} of {len(images)} scenes (e.g. '{missing[0]}') have"
    return f"{which} no CRS: patches and predictions will not be georeferenced"


def mask_strips(mask: Source):
    """(row0, strip (bands, rows, W)) over the whole mask, about STRIP_PIXELS at a time (decoding makes a few
    int64 copies of a strip, so its size, not the scene's, sets the memory)."""
    rows = max(1, STRIP_PIXELS // mask.info.width)
    for r in range(0, mask.info.height, rows):
        yield r, mask.read(r, 0, min(rows, mask.info.height - r), mask.info.width)


def observed_values(masks: list[Source]) -> list[int]:
    """Distinct values of single-band masks (to name classes when the config gives none)."""
    values: set[int] = set()
    for m in masks:
        for _, strip in mask_strips(m):
            values.update(np.unique(strip[0]).tolist())
    return sorted(values)


def label_mapping(prep: PrepConfig, masks: list[Source]) -> LabelMapping:
    needs_scan = not (prep.palette or prep.class_map or prep.classes)
    observed = observed_values(masks) if needs_scan else None
    return build_mapping(
        prep.palette, prep.classes, prep.class_map, prep.ignore_values, prep.ignore_colors, prep.ignore_index, observed
    )


def unknown_values(mapping: LabelMapping, masks: list[Source]) -> dict[str, dict[str, int]]:
    """{mask path: {raw value or colour: pixel count}} for values the mapping cannot place."""
    out: dict[str, dict[str, int]] = {}
    for m in masks:
        counts: dict[int, int] = {}
        for _, strip in mask_strips(m):
            for value, n in mapping.decode(strip, m.info.path)[1].items():
                counts[value] = counts.get(value, 0) + n
        if counts:
            out[m.info.path] = {mapping.describe(v): n for v, n in sorted(counts.items(), key=lambda kv: -kv[1])}
    return out


def unknown_error(
    unknown: dict[str, dict[str, int]], mapping: LabelMapping, lossy: set[str] | None = None
) -> InputError:
    """One line for mask values no class has; a lossy (JPEG) mask is named as the cause, not the palette."""
    lossy_hit = [p for p in unknown if p in (lossy or set()) or Path(p).suffix.lower() in (".jpg", ".jpeg")]
    if lossy_hit:
        path = lossy_hit[0]
        return InputError(
            f"mask '{path}' is stored with lossy (JPEG) compression, which invents {len(unknown[path])} values "
            "at class edges that no class has; masks must be stored losslessly: save it again as PNG or an "
            "uncompressed/deflate GeoTIFF from the original labels"
        )
    path, values = next(iter(unknown.items()))
    listed = ", ".join(f"{v} ({n} px)" for v, n in list(values.items())[:6])
    fix = (
        "add them to prep.palette or prep.ignore_colors"
        if mapping.kind == "rgb"
        else "add them to prep.class_map or prep.ignore_values"
    )
    more = f" (and {len(unknown) - 1} more masks)" if len(unknown) > 1 else ""
    return InputError(f"'{path}' has values the mapping cannot place: {listed}{more}; {fix}")
