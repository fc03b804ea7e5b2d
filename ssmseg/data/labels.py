"""Turning masks into class indices: index masks (with remapping) or RGB colour-coded masks (palette)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssmseg.errors import InputError


def parse_color(text: str) -> tuple[int, int, int]:
    """'#3C1098' -> (60, 16, 152)."""
    t = text.strip().lstrip("#")
    if len(t) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in t):
        raise InputError(f"'{text}' is not a colour; write colours as '#RRGGBB'")
    return int(t[0:2], 16), int(t[2:4], 16), int(t[4:6], 16)


def color_hex(rgb: tuple[int, int, int] | list[int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*rgb)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(3, ...) uint8 channels -> packed int32 0xRRGGBB."""
    rgb = rgb.astype(np.int32)
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def default_palette(n: int) -> list[tuple[int, int, int]]:
    """Distinct colours for index masks (used by panels and the GeoTIFF colour table)."""
    base = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ]
    return [
        base[i % len(base)] if i < len(base) else tuple((37 * i + k * 91) % 256 for k in range(3)) for i in range(n)
    ]


@dataclass
class LabelMapping:
    """How raw mask values become class indices 0..n-1, with ``ignore_index`` for everything ignored."""

    classes: list[str]
    palette: list[tuple[int, int, int]]
    ignore_index: int
    kind: str  # "index" or "rgb"
    values: dict[int, int] = field(default_factory=dict)  # raw value (or packed colour) -> class
    ignored: set[int] = field(default_factory=set)  # raw values (or packed colours) -> ignore

    def decode(self, mask: np.ndarray, path: str | None = None) -> tuple[np.ndarray, dict[int, int]]:
        """mask (bands, h, w) -> labels (h, w) uint8 and {unknown raw value: pixel count}; ``path`` names the
        mask in errors."""
        name = f"mask '{path}'" if path else "the mask"
        if self.kind == "rgb":
            if mask.shape[0] < 3:
                raise InputError(
                    f"{name} has {mask.shape[0]} band(s) and no colour table, but prep.palette expects RGB colours; "
                    "for index masks use prep.classes/class_map instead of prep.palette"
                )
            raw = _pack(mask[:3])
        else:
            if mask.shape[0] != 1:
                raise InputError(
                    f"{name} has {mask.shape[0]} bands; index masks need one: set prep.palette for colour masks, "
                    "or prep.labels_from: argmax for per-class maps"
                )
            raw = mask[0].astype(np.int64)
        keys = np.array(sorted(self.values), dtype=np.int64)
        out = np.full(raw.shape, self.ignore_index, dtype=np.uint8)
        if len(keys):
            pos = np.clip(np.searchsorted(keys, raw), 0, len(keys) - 1)
            hit = keys[pos] == raw
            classes = np.array([self.values[k] for k in keys], dtype=np.uint8)
            out[hit] = classes[pos[hit]]
        else:
            hit = np.zeros(raw.shape, bool)
        unknown_mask = ~hit
        if self.ignored:
            unknown_mask &= ~np.isin(raw, list(self.ignored))
        unknown: dict[int, int] = {}
        if unknown_mask.any():
            vals, counts = np.unique(raw[unknown_mask], return_counts=True)
            unknown = dict(zip(vals.tolist(), counts.tolist(), strict=True))
        return out, unknown

    def describe(self, raw: int) -> str:
        return color_hex(((raw >> 16) & 255, (raw >> 8) & 255, raw & 255)) if self.kind == "rgb" else str(raw)


def build_mapping(
    palette: dict[str, str] | None,
    classes: list[str] | None,
    class_map: dict[int, int] | None,
    ignore_values: list[int],
    ignore_colors: list[str],
    ignore_index: int,
    observed_values: list[int] | None = None,
) -> LabelMapping:
    """The mapping from the prep config; index masks without classes or class_map use the observed values."""
    if palette:
        names = list(dict.fromkeys(palette.values()))
        values = {
            int(_pack(np.array(parse_color(c), np.uint8)[:, None])[0]): names.index(n) for c, n in palette.items()
        }
        colours = [parse_color(next(c for c, n in palette.items() if n == name)) for name in names]
        ignored = {int(_pack(np.array(parse_color(c), np.uint8)[:, None])[0]) for c in ignore_colors}
        return LabelMapping(names, colours, ignore_index, "rgb", values, ignored)
    ignored = set(ignore_values)
    if class_map:
        n = max(class_map.values()) + 1
        values = dict(class_map)
    elif classes:
        n = len(classes)
        values = {i: i for i in range(n) if i not in ignored}
    else:
        observed = sorted(v for v in (observed_values or []) if v not in ignored)
        n = len(observed)
        values = {v: i for i, v in enumerate(observed)}
        classes = [f"class_{v}" for v in observed]
    if classes is not None and len(classes) != n:
        raise InputError(f"prep.classes names {len(classes)} classes but class_map makes {n}; make them agree")
    if n > 255 or ignore_index < n:
        raise InputError(f"{n} classes leave no room for ignore_index {ignore_index}; use at most 255 classes")
    names = classes or [f"class_{i}" for i in range(n)]
    return LabelMapping(names, default_palette(n), ignore_index, "index", values, ignored)
