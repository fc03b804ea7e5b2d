"""Spatial blocks and the crop windows inside them.

Windows never cross a block boundary, so patches of different blocks (and so of different splits or
folds) never share a pixel. Windows may run past the scene's edge (``edge: pad``), never past an inner
block boundary.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    """Rows [r0, r1) and columns [c0, c1) of one scene."""

    source: int
    index: int
    r0: int
    r1: int
    c0: int
    c1: int


def overlap_pixels(overlap: float, crop: int, pixels: int | None = None) -> int:
    """The overlap of neighbouring crops in pixels: ``pixels`` when given (prep.overlap_px), else the fraction
    ``overlap`` (in [0, 1), prep.overlap) of the crop."""
    if pixels is not None:
        return int(pixels)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap {overlap} is not a fraction in [0, 1)")
    return round(overlap * crop)


def block_problem(block_size: int | None, crop: int) -> str | None:
    """Blocks are cut in whole crops: a block side under the crop size is a config problem (with its fix)."""
    if block_size is None or block_size >= crop:
        return None
    return f"prep.split.block_size: {block_size} is smaller than data.crop_size ({crop}); use at least the crop size"


def make_blocks(source: int, height: int, width: int, size: int) -> list[Block]:
    """A grid of size x size blocks over the scene (the last row and column may be smaller)."""
    out = []
    for r0 in range(0, height, size):
        for c0 in range(0, width, size):
            out.append(Block(source, len(out), r0, min(r0 + size, height), c0, min(c0 + size, width)))
    return out


def axis_starts(lo: int, hi: int, crop: int, stride: int, scene_end: int, edge: str) -> list[int]:
    """Window starts covering [lo, hi) with windows of ``crop``, without crossing ``hi`` unless it is the
    scene's end (then ``pad`` lets a window run past it)."""
    if hi - lo >= crop:
        starts = list(range(lo, hi - crop + 1, stride))
        if starts[-1] + crop < hi:
            starts.append(hi - crop)  # align the last window to the block's end
        return starts
    return [lo] if (hi == scene_end and edge == "pad") else []


def block_windows(block: Block, crop: int, stride: int, height: int, width: int, edge: str) -> list[tuple[int, int]]:
    """(row, col) of every crop window inside a block."""
    rows = axis_starts(block.r0, block.r1, crop, stride, height, edge)
    cols = axis_starts(block.c0, block.c1, crop, stride, width, edge)
    return [(r, c) for r in rows for c in cols]


def owned_windows(
    block: Block, crop: int, stride: int, height: int, width: int, edge: str
) -> list[tuple[int, int, int, int]]:
    """(row, col, owned rows, owned cols) of every crop window inside a block. Overlapping windows (an
    overlap, or the last window shifted inward to end at the block's edge) share pixels; each pixel is owned
    by exactly one window, the last one that starts at or before it, so a window owns the rectangle from its
    top-left corner to the next window's start (or its own end). Counts and statistics use owned pixels only."""
    rows = axis_starts(block.r0, block.r1, crop, stride, height, edge)
    cols = axis_starts(block.c0, block.c1, crop, stride, width, edge)

    def owned(starts: list[int], k: int, hi: int) -> int:
        return (starts[k + 1] if k + 1 < len(starts) else min(starts[k] + crop, hi)) - starts[k]

    return [
        (r, c, owned(rows, i, block.r1), owned(cols, j, block.c1))
        for i, r in enumerate(rows)
        for j, c in enumerate(cols)
    ]
