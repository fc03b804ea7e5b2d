"""SSMU-Net: learnable sinc band-pass filters over the spectrum, an embedding, then a UNet whose
down-sampled stages carry SS2D Mamba blocks for long-range spatial context.
(B, bands, H, W) -> (B, classes, H, W).

The per-pixel linear classifier is a path of the model (``model.spectral_head``, ``spectral_context``,
``spatial_gate``, ``linear_epochs``: :class:`~ssmseg.models.layers.spectral_path.SpectralPath`); the UNet below
gives the spatial logits.

Ablation switches: ``model.sinc: false`` feeds the raw bands alone to the embedding; ``model.ss2d: false``
replaces each SS2D block by its scan-free twin (``ConvMixBlock``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.conv import ConvBlock, Up, context_block, norm
from ssmseg.models.layers.sinc import SincBandFilters
from ssmseg.models.layers.spectral_path import SpectralPath


class SSMUNet(SpectralPath):
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
        spectral_head: bool = True,
        spatial_gate: float = 0.0,
        sinc_samples: int | None = 2,
        scan_from: int = 2,
        spectral_context: int = 0,
    ) -> None:
        super().__init__()
        kernel = min(15, max(3, in_channels // 2 * 2 - 1))
        self.sinc = SincBandFilters(n_filters, kernel, samples=sinc_samples) if sinc else None
        # The raw bands go in beside the filter bank: a skip that keeps the exact spectrum available.
        spectral = self.sinc.out_channels if self.sinc is not None else 0
        self.embed = nn.Sequential(nn.Conv2d(spectral + in_channels, width, 1), norm(width), nn.GELU())
        chans = [width * 2**i for i in range(depth + 1)]
        # Full resolution keeps plain convolutions (as VM-UNet starts at 1/4): the scans run where sequences are
        # 4x shorter, which halves the model's cost without losing the global context they bring.
        self.enc = nn.ModuleList([ConvBlock(width, chans[0])])
        for i in range(depth):
            conv = ConvBlock(chans[i], chans[i + 1])  # built first: the init order fixes the random weights
            if i + 1 < scan_from:
                self.enc.append(conv)
            else:
                self.enc.append(nn.Sequential(conv, context_block(chans[i + 1], d_state, expand, d_conv, ss2d)))
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        # The per-pixel linear classifier on the bands, and the gate through which spatial logits add to it.
        self.init_spectral_path(in_channels, num_classes, spectral_head, spatial_gate, spectral_context)

    def embed_sinc(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, width, H, W): ``embed(cat([sinc(x), x]))`` without building the concatenation:
        the sinc bank's signed means are linear in the bands, so their block of the 1x1 embedding folds into the
        raw bands' block, and only the RMS maps are convolved apart (same weights, same result)."""
        conv, fp = self.embed[0], self.sinc.out_channels // 2
        mean, rms_maps = self.sinc.parts(x)  # (F*P, bands), (B, F*P, H, W)
        w = conv.weight.flatten(1)  # (width, 2 F*P + bands): [means | rms | bands], the order of the concatenation
        y = F.conv2d(x, (w[:, 2 * fp :] + w[:, :fp] @ mean)[:, :, None, None], conv.bias)
        y = y + F.conv2d(rms_maps, w[:, fp : 2 * fp, None, None])
        return self.embed[2](self.embed[1](y))

    def spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, classes, H, W): the UNet path (sinc bank, embedding, SS2D stages)."""
        y = self.embed(x) if self.sinc is None else self.embed_sinc(x)
        skips = [self.enc[0](y)]
        for stage in self.enc[1:]:
            skips.append(stage(F.max_pool2d(skips[-1], 2, ceil_mode=True)))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.head(self.drop(y))
