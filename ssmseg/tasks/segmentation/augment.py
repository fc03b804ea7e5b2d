"""Batched augmentation on the model's device, valid for any number of bands.

Randomness comes from a generator seeded per (seed, epoch, rank), so a resumed run draws exactly what an
uninterrupted one drew.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssmseg.config.schema import AugmentConfig


def augment(
    image: torch.Tensor, mask: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """image (B, C, H, W) float, mask (B, H, W) long -> augmented copies."""
    b = image.shape[0]

    def coin(p: float = 0.5) -> torch.Tensor:
        return torch.rand(b, generator=gen, device=gen.device) < p

    if cfg.flips:
        for dim, flip in ((3, coin()), (2, coin())):
            sel = flip.to(image.device)
            image = torch.where(sel[:, None, None, None], image.flip(dim), image)
            mask = torch.where(sel[:, None, None], mask.flip(dim - 1), mask)
    if cfg.rot90 and image.shape[-1] == image.shape[-2]:
        k = torch.randint(0, 4, (b,), generator=gen, device=gen.device).to(image.device)
        image = torch.stack([torch.rot90(image[i], int(k[i]), (1, 2)) for i in range(b)])
        mask = torch.stack([torch.rot90(mask[i], int(k[i]), (0, 1)) for i in range(b)])
    if cfg.scale_jitter > 0:
        s = 1 + (torch.rand(b, generator=gen, device=gen.device).to(image.device) * 2 - 1) * cfg.scale_jitter
        theta = torch.zeros(b, 2, 3, device=image.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / s
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        image = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        m = F.grid_sample(mask[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        inside = F.grid_sample(torch.ones_like(m), grid, mode="nearest", padding_mode="zeros", align_corners=False)
        mask = torch.where(inside[:, 0] > 0, m[:, 0].long(), ignore_index)
    c = image.shape[1]
    if cfg.brightness > 0:
        shift = (torch.rand(b, c, 1, 1, generator=gen, device=gen.device) * 2 - 1) * cfg.brightness
        image = image + shift.to(image.device)
    if cfg.contrast > 0:
        factor = 1 + (torch.rand(b, c, 1, 1, generator=gen, device=gen.device) * 2 - 1) * cfg.contrast
        mean = image.mean((2, 3), keepdim=True)
        image = (image - mean) * factor.to(image.device) + mean
    if cfg.noise_std > 0:
        noise = torch.randn(image.shape, generator=gen, device=gen.device) * cfg.noise_std
        image = image + noise.to(image.device)
    return image, mask
