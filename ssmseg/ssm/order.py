"""Scan orders: permutations that read an H x W grid as a sequence.

Each function returns a LongTensor ``perm`` of length H*W: position t of the sequence is flat pixel
``perm[t]`` (row-major flat index). Another order is one more function and one more entry in ``ORDERS``.

Unordered points (sparse observations with coordinates in [0, 1]^2) are ordered by ``point_order``: along a
Hilbert curve, row by row, or at random. ``grid_coords`` gives the pixel centres of an H x W grid in the same
convention, so ``point_order(grid_coords(h, w), "hilbert")`` equals ``hilbert(h, w)`` on 2^k x 2^k grids.
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


def hilbert_index(x: torch.Tensor, y: torch.Tensor, bits: int) -> torch.Tensor:
    """Distance along the Hilbert curve of the 2^bits x 2^bits grid for integer cells (x, y) (any shape)."""
    n = 1 << bits
    x, y = x.long().clone(), y.long().clone()
    d = torch.zeros_like(x)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx.long()) ^ ry.long())
        # Rotate the quadrant so the sub-curve starts and ends where the parent curve expects.
        flip = ~ry & rx
        x = torch.where(flip, n - 1 - x, x)
        y = torch.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = torch.where(swap, y, x), torch.where(swap, x, y)
        s >>= 1
    return d


def hilbert(h: int, w: int) -> torch.Tensor:
    """Hilbert curve over the smallest 2^k square holding the grid: on a 2^k x 2^k grid each step moves to a
    4-neighbour; on other sizes the curve skips the cells outside the grid (still a permutation, still local)."""
    bits = max(1, max(h, w) - 1).bit_length()
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.argsort(hilbert_index(xx.reshape(-1), yy.reshape(-1), bits), stable=True)


ORDERS: dict[str, Callable[[int, int], torch.Tensor]] = {
    "rows": rows,
    "cols": cols,
    "rows_reversed": rows_reversed,
    "cols_reversed": cols_reversed,
    "zorder": zorder,
    "hilbert": hilbert,
}

FOUR_DIRECTIONS = ("rows", "cols", "rows_reversed", "cols_reversed")


def order_indices(names: tuple[str, ...], h: int, w: int) -> torch.Tensor:
    """(K, H*W) permutations for the named orders; an unknown name lists the valid ones."""
    unknown = [n for n in names if n not in ORDERS]
    if unknown:
        raise ValueError(f"unknown scan order {unknown}; valid orders: {', '.join(ORDERS)}")
    return torch.stack([ORDERS[n](h, w) for n in names])


POINT_ORDERS = ("hilbert", "rows", "random")
_POINT_BITS = 16  # points are placed on a 65536 x 65536 grid: distinct unless closer than 1.5e-5


def grid_coords(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(H*W, 2) pixel centres (x, y) in [0, 1]^2, row-major: x = (col + 0.5) / W, y = (row + 0.5) / H."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def point_order(coords: torch.Tensor, kind: str = "hilbert", generator: torch.Generator | None = None) -> torch.Tensor:
    """Order points with coordinates (x, y) in [0, 1]^2: coords (N, 2) -> perm (N,), or (B, N, 2) -> (B, N).

    ``perm[..., t]`` is the index of the t-th point. ``hilbert``: along a Hilbert curve (near points stay near
    in the sequence); ``rows``: by y then x; ``random``: a random permutation drawn from ``generator``
    (per batch element). Ties keep the input order.
    """
    if coords.shape[-1] != 2 or coords.dim() not in (2, 3):
        raise ValueError(f"point_order expects coords of shape (N, 2) or (B, N, 2), got {tuple(coords.shape)}")
    if kind not in POINT_ORDERS:
        raise ValueError(f"unknown point order '{kind}'; valid orders: {', '.join(POINT_ORDERS)}")
    if kind == "random":
        lead, n = coords.shape[:-2], coords.shape[-2]
        rows_ = [torch.randperm(n, generator=generator) for _ in range(max(1, lead.numel()))]
        return torch.stack(rows_).reshape(*lead, n).to(coords.device)
    n_cells = 1 << _POINT_BITS
    q = (coords.detach().float().clamp(0, 1) * n_cells).long().clamp_(0, n_cells - 1)
    qx, qy = q[..., 0], q[..., 1]
    key = hilbert_index(qx, qy, _POINT_BITS) if kind == "hilbert" else qy * n_cells + qx
    return torch.argsort(key, dim=-1, stable=True)
