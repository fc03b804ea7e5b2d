"""SSMU-Net: learnable sinc band-pass filters over the spectrum, an embedding, then a UNet whose
down-sampled stages carry SS2D Mamba blocks for long-range spatial context.
(B, bands, H, W) -> (B, classes, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.conv import ConvBlock, SS2DBlock, Up, norm
from ssmseg.models.layers.sinc import SincBandFilters


class SSMUNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depth: int = 3,
        d_state: int = 16,
        expand: int = 2,
        n_filters: int = 16,
        dropout: float = 0.0,
        d_conv: int = 3,
    ) -> None:
        super().__init__()
        self.sinc = SincBandFilters(n_filters, kernel_size=min(15, max(3, in_channels // 2 * 2 - 1)))
        # The raw bands go in beside the filter bank: a skip that keeps the exact spectrum available.
        self.embed = nn.Sequential(nn.Conv2d(self.sinc.out_channels + in_channels, width, 1), norm(width), nn.GELU())
        chans = [width * 2**i for i in range(depth + 1)]
        # Full resolution keeps plain convolutions (as VM-UNet starts at 1/4): the scans run where sequences are
        # 4x shorter, which halves the model's cost without losing the global context they bring.
        self.enc = nn.ModuleList([ConvBlock(width, chans[0])])
        for i in range(depth):
            conv = ConvBlock(chans[i], chans[i + 1])  # built first: the init order fixes the random weights
            self.enc.append(nn.Sequential(conv, SS2DBlock(chans[i + 1], d_state, expand, d_conv=d_conv)))
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.embed(torch.cat([self.sinc(x), x], dim=1))
        skips = [self.enc[0](y)]
        for stage in self.enc[1:]:
            skips.append(stage(F.max_pool2d(skips[-1], 2, ceil_mode=True)))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.head(self.drop(y))
