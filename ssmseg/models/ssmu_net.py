"""SSMU-Net: learnable sinc band-pass filters over the spectrum, an embedding, then a UNet whose
down-sampled stages carry SS2D Mamba blocks for long-range spatial context.
(B, bands, H, W) -> (B, classes, H, W).

Ablation switches: ``model.sinc: false`` feeds the raw bands alone to the embedding; ``model.ss2d: false``
replaces each SS2D block by its scan-free twin (``ConvMixBlock``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.conv import ConvBlock, Up, context_block, norm
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
        sinc: bool = True,
        ss2d: bool = True,
    ) -> None:
        super().__init__()
        self.sinc = SincBandFilters(n_filters, kernel_size=min(15, max(3, in_channels // 2 * 2 - 1))) if sinc else None
        # The raw bands go in beside the filter bank: a skip that keeps the exact spectrum available.
        spectral = self.sinc.out_channels if self.sinc is not None else 0
        self.embed = nn.Sequential(nn.Conv2d(spectral + in_channels, width, 1), norm(width), nn.GELU())
        chans = [width * 2**i for i in range(depth + 1)]
        # Full resolution keeps plain convolutions (as VM-UNet starts at 1/4): the scans run where sequences are
        # 4x shorter, which halves the model's cost without losing the global context they bring.
        self.enc = nn.ModuleList([ConvBlock(width, chans[0])])
        for i in range(depth):
            conv = ConvBlock(chans[i], chans[i + 1])  # built first: the init order fixes the random weights
            self.enc.append(nn.Sequential(conv, context_block(chans[i + 1], d_state, expand, d_conv, ss2d)))
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.embed(torch.cat([self.sinc(x), x], dim=1) if self.sinc is not None else x)
        skips = [self.enc[0](y)]
        for stage in self.enc[1:]:
            skips.append(stage(F.max_pool2d(skips[-1], 2, ceil_mode=True)))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.head(self.drop(y))
