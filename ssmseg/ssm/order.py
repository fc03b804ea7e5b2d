"""Scan orders: permutations that read an H x W grid as a sequence.

Each function returns a LongTensor ``perm`` of length H*W: position t of the sequence is flat pixel
``perm[t]`` (row-major flat index). Another order (Hilbert, ...) is one more function and one more entry in
``ORDERS``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def rows(h: int, w: int) -> torch.Tensor:
    """Row by row, left to right."""
    return torch.arange(h * w)


def cols(h: int, w: int) -> torch.Tensor:
    """Column by column, top to bottom."""
    return torch.arange(h * w).reshape(h, w).T.reshape(-1)


def rows_reversed(h: int, w: int) -> torch.Tensor:
    return rows(h, w).flip(0)


def cols_reversed(h: int, w: int) -> torch.Tensor:
    return cols(h, w).flip(0)


def zorder(h: int, w: int) -> torch.Tensor:
    """Morton (Z-order) curve: neighbours on the grid stay near in the sequence; any H, W."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    key = torch.zeros(h, w, dtype=torch.long)
    for bit in range(max(h, w).bit_length()):
        key |= ((xx >> bit) & 1) << (2 * bit)
        key |= ((yy >> bit) & 1) << (2 * bit + 1)
    return torch.argsort(key.reshape(-1), stable=True)


ORDERS: dict[str, Callable[[int, int], torch.Tensor]] = {
    "rows": rows,
    "cols": cols,
    "rows_reversed": rows_reversed,
    "cols_reversed": cols_reversed,
    "zorder": zorder,
}

FOUR_DIRECTIONS = ("rows", "cols", "rows_reversed", "cols_reversed")


def order_indices(names: tuple[str, ...], h: int, w: int) -> torch.Tensor:
    """(K, H*W) permutations for the named orders; an unknown name lists the valid ones."""
    unknown = [n for n in names if n not in ORDERS]
    if unknown:
        raise ValueError(f"unknown scan order {unknown}; valid orders: {', '.join(ORDERS)}")
    return torch.stack([ORDERS[n](h, w) for n in names])
