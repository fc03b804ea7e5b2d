"""UNet baseline: (B, bands, H, W) -> (B, classes, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.conv import ConvBlock, Up
from ssmseg.models.layers.spectral_path import SpectralPath


class UNet(nn.Module):
    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, depth: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(in_channels, chans[0])
        self.down = nn.ModuleList(ConvBlock(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(F.max_pool2d(skips[-1], 2, ceil_mode=True)))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.head(self.drop(y))


class SpectralUNet(SpectralPath):
    """A plain UNet as the spatial path beside the per-pixel linear classifier
    (:class:`~ssmseg.models.layers.spectral_path.SpectralPath`): the baseline that tells whether SSMU-Net's sinc
    bank and SS2D stages earn their cost over plain convolutions on a cube. (B, bands, H, W) -> (B, classes, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depth: int = 3,
        dropout: float = 0.0,
        spectral_head: bool = True,
        spatial_gate: float = 0.0,
        spectral_context: int = 0,
    ) -> None:
        super().__init__()
        self.unet = UNet(in_channels, num_classes, width, depth, dropout)
        self.init_spectral_path(in_channels, num_classes, spectral_head, spatial_gate, spectral_context)

    def spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
