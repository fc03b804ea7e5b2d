"""Sliding-window inference over whole scenes with blended logits, in bounded memory.

Windows (``eval.window`` with ``eval.overlap``) are visited one row of windows at a time: the strip of
rows they cover is read from disk, normalised as in training, predicted in batches (optionally averaged
over flips and 90-degree rotations), and its logits are added into a rolling accumulator with a Gaussian
(or cosine) weight that fades towards window edges. Rows no later window can touch are finished (arg-max,
confidence) and handed to the writer, so memory grows with the scene's width, never its height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ssmseg.data.io import Source


def owned_mask(patch: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: the pixels a prepared patch owns (prep records each patch's ``own`` region, the top-left
    rows and columns no earlier window covers), so overlapping patches score each pixel once. Datasets
    prepared before ``own`` was recorded: every pixel."""
    own = np.zeros(shape, bool)
    oh, ow = patch.get("own", shape)
    own[:oh, :ow] = True
    return own


def blend_weights(size: int, kind: str) -> torch.Tensor:
    """(size, size) weights: Gaussian (sigma = size / 8, as nnU-Net), cosine (Hann) or flat, never 0."""
    if kind == "mean":
        w1 = torch.ones(size)
    elif kind == "cosine":
        w1 = torch.hann_window(size + 2, periodic=False)[1:-1]
    else:
        x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        w1 = torch.exp(-0.5 * (x / (size / 8)) ** 2).float()
    # Floor the 1-D profile, not the product: a floored product would be flat along window edges, and the
    # scene's first and last rows (seen only near a window's edge) would blend as a plain mean.
    w1 = (w1 / w1.max()).clamp_min(1e-3)
    return torch.outer(w1, w1)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Starts covering [0, length) with windows inside the scene (the last aligned to the end)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


def predict_batch(model: nn.Module, x: torch.Tensor, tta: bool) -> torch.Tensor:
    """Logits (B, K, h, w); with ``tta`` averaged over the flips and 90-degree rotations (the eight
    symmetries of a square window, the four flips of a rectangular one)."""
    if not tta:
        return model(x).float()
    if x.shape[-1] == x.shape[-2]:
        symmetries = [(k, dims) for k in range(4) for dims in ((), (-1,))]
    else:
        symmetries = [(0, dims) for dims in ((), (-1,), (-2,), (-2, -1))]
    total = torch.zeros(())
    for k, dims in symmetries:
        seen = torch.rot90(x.flip(dims) if dims else x, k, (-2, -1))
        back = torch.rot90(model(seen).float(), -k, (-2, -1))
        total = total + (back.flip(dims) if dims else back)
    return total / len(symmetries)


@dataclass
class Normaliser:
    """What the checkpoint says about inputs: offset and scale per band, nodata."""

    offset: np.ndarray  # (C,)
    scale: np.ndarray
    nodata: float | None = None

    def __call__(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """raw (C, h, w) -> normalised float32 with invalid pixels 0, and the (h, w) valid mask."""
        data = raw.astype(np.float32)
        valid = ~np.isnan(data).any(0)
        if self.nodata is not None:
            valid &= ~(data == self.nodata).all(0)
        out = (np.nan_to_num(data) - self.offset[:, None, None]) / self.scale[:, None, None]
        return out * valid, valid


@dataclass
class Strip:
    """Finished rows [row0, row0 + height) of a scene: class indices, confidence, and the valid mask."""

    row0: int
    labels: np.ndarray  # (h, W) uint8
    confidence: np.ndarray  # (h, W) float32
    valid: np.ndarray  # (h, W) bool


def predict_scene(
    model: nn.Module,
    src: Source,
    norm: Normaliser,
    window: int,
    overlap: float,
    blend: str,
    batch_size: int,
    tta: bool,
    device: torch.device,
    num_classes: int,
    on_window_row: Callable[[], None] | None = None,
) -> Iterator[Strip]:
    """Yield finished strips of the scene from top to bottom."""
    H, W = src.info.height, src.info.width
    win_h, win_w = min(window, H), min(window, W)
    pad_h, pad_w = window - win_h, window - win_w  # scenes smaller than a window are reflect-padded
    stride = max(1, round(window * (1 - overlap)))
    rows, cols = window_starts(H, win_h, stride), window_starts(W, win_w, stride)
    weight = blend_weights(window, blend)[:win_h, :win_w].numpy() if not (pad_h or pad_w) else None
    acc = np.zeros((num_classes, 0, W), np.float32)
    wsum = np.zeros((0, W), np.float32)
    valid_acc = np.zeros((0, W), bool)
    base = 0  # scene row of acc[:, 0]
    model.eval()
    for i, r in enumerate(rows):
        raw = src.read(r, 0, win_h, W)
        data, valid = norm(raw)
        need = r + win_h - base
        if need > acc.shape[1]:  # grow the accumulator to cover this strip
            grow = need - acc.shape[1]
            acc = np.concatenate([acc, np.zeros((num_classes, grow, W), np.float32)], axis=1)
            wsum = np.concatenate([wsum, np.zeros((grow, W), np.float32)])
            valid_acc = np.concatenate([valid_acc, np.zeros((grow, W), bool)])
        valid_acc[r - base : r - base + win_h] |= valid
        tiles = np.stack([data[:, :, c : c + win_w] for c in cols])
        if pad_h or pad_w:
            tiles = np.pad(tiles, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="reflect")
        with torch.no_grad():
            for b in range(0, len(tiles), batch_size):
                x = torch.from_numpy(tiles[b : b + batch_size]).to(device)
                logits = predict_batch(model, x, tta)[:, :, :win_h, :win_w].cpu().numpy()
                for j, c in enumerate(cols[b : b + batch_size]):
                    w = weight if weight is not None else np.ones((win_h, win_w), np.float32)
                    acc[:, r - base : r - base + win_h, c : c + win_w] += logits[j] * w
                    wsum[r - base : r - base + win_h, c : c + win_w] += w
        if on_window_row:
            on_window_row()
        done_until = rows[i + 1] if i + 1 < len(rows) else H  # rows above the next window are final
        n = done_until - base
        if n > 0:
            probs = torch.from_numpy(acc[:, :n] / np.maximum(wsum[:n], 1e-12)).softmax(0).numpy()
            yield Strip(base, probs.argmax(0).astype(np.uint8), probs.max(0), valid_acc[:n].copy())
            acc, wsum, valid_acc, base = acc[:, n:], wsum[n:], valid_acc[n:], done_until
