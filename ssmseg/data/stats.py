"""Per-band normalisation statistics, accumulated patch by patch over valid pixels only, and applied on load."""

from __future__ import annotations

from typing import Any

import numpy as np

SAMPLE_TARGET = 50_000  # pixels per band kept for the 2nd/98th percentiles


class BandStats:
    """Running count, sum, sum of squares, min and max per band, plus a pixel sample for percentiles."""

    def __init__(self, bands: int, per_patch_sample: int, seed: int = 0) -> None:
        self.n = 0
        self.sum = np.zeros(bands)
        self.sumsq = np.zeros(bands)
        self.min = np.full(bands, np.inf)
        self.max = np.full(bands, -np.inf)
        self.samples: list[np.ndarray] = []
        self.per_patch = per_patch_sample
        self.rng = np.random.default_rng(seed)

    def summarise(self, image: np.ndarray, valid: np.ndarray) -> tuple | None:
        """One patch's count, sums, extremes and pixel sample: computed once, added to every set it
        belongs to. image (bands, h, w); valid (h, w) bool."""
        pixels = image[:, valid].astype(np.float32)  # (bands, n)
        n = pixels.shape[1]
        if n == 0:
            return None
        idx = self.rng.choice(n, min(self.per_patch, n), replace=False)
        return (
            n,
            pixels.sum(1, dtype=np.float64),
            np.square(pixels, dtype=np.float64).sum(1),
            pixels.min(1),
            pixels.max(1),
            pixels[:, idx],
        )

    def merge(self, summary: tuple | None) -> None:
        if summary is None:
            return
        n, s, sq, lo, hi, sample = summary
        self.n += n
        self.sum += s
        self.sumsq += sq
        self.min = np.minimum(self.min, lo)
        self.max = np.maximum(self.max, hi)
        self.samples.append(sample)

    def add(self, image: np.ndarray, valid: np.ndarray) -> None:
        self.merge(self.summarise(image, valid))

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            return {"pixels": 0}
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sumsq / self.n - mean**2, 0.0))
        sample = np.concatenate(self.samples, axis=1)
        p2, p98 = np.percentile(sample, [2, 98], axis=1)
        return {
            "pixels": int(self.n),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "mean": mean.tolist(),
            "std": std.tolist(),
            "p2": p2.tolist(),
            "p98": p98.tolist(),
        }


def scale_and_shift(stats: dict[str, Any], method: str) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per band so that normalised = (x - offset) / scale."""
    if method == "zscore":
        offset, scale = np.array(stats["mean"]), np.array(stats["std"])
    elif method == "minmax":
        offset, scale = np.array(stats["min"]), np.array(stats["max"]) - np.array(stats["min"])
    elif method == "percentile":
        offset, scale = np.array(stats["p2"]), np.array(stats["p98"]) - np.array(stats["p2"])
    else:
        raise ValueError(f"unknown normalisation '{method}'")
    return offset.astype(np.float32), np.where(scale > 1e-12, scale, 1.0).astype(np.float32)
