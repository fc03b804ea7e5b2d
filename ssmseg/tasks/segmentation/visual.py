"""Pictures of predictions: false-colour composites, colour-coded label maps and side-by-side panels."""

from __future__ import annotations

import torch

from ssmseg.data.labels import parse_color


def false_colour(image: torch.Tensor, bands: tuple[int, int, int] | None = None) -> torch.Tensor:
    """(C, H, W) -> (3, H, W) uint8, 2-98 percentile stretch per channel; three evenly spaced bands by default
    (one band: gray; two: the first as red, the second as green and blue)."""
    c = image.shape[0]
    if bands is None:
        bands = (0, c - 1, c - 1) if c < 3 else (c - 1, c // 2, 0) if c > 3 else (0, 1, 2)
    rgb = image[list(bands)].float()
    flat = rgb.flatten(1)
    lo, hi = flat.quantile(0.02, dim=1)[:, None, None], flat.quantile(0.98, dim=1)[:, None, None]
    return ((rgb - lo) / (hi - lo).clamp_min(1e-6) * 255).clamp(0, 255).to(torch.uint8)


def colorize(labels: torch.Tensor, palette: list[str], ignore_index: int) -> torch.Tensor:
    """(H, W) class indices -> (3, H, W) uint8; ignored pixels black."""
    table = torch.zeros(256, 3, dtype=torch.uint8)
    for i, colour in enumerate(palette):
        table[i] = torch.tensor(parse_color(colour), dtype=torch.uint8)
    table[ignore_index] = 0
    return table[labels.long().clamp(0, 255)].permute(2, 0, 1)


def panel(
    image: torch.Tensor, target: torch.Tensor, pred: torch.Tensor, palette: list[str], ignore_index: int
) -> torch.Tensor:
    """Input, truth and prediction side by side: (3, H, 3 W + 8) uint8."""
    gap = torch.full((3, image.shape[-2], 4), 255, dtype=torch.uint8)
    parts = [
        false_colour(image.cpu()),
        gap,
        colorize(target.cpu(), palette, ignore_index),
        gap,
        colorize(pred.cpu(), palette, ignore_index),
    ]
    return torch.cat(parts, dim=2)
