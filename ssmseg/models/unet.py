"""UNet baseline: (B, bands, H, W) -> (B, classes, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.conv import ConvBlock, Up


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
