"""CMT-UNet-style hybrid: residual CNN encoder, SS2D blocks for global context in the deep stages,
multi-scale attention at the bottleneck, wavelet convolution, and a decoder with window attention.
(B, bands, H, W) -> (B, classes, H, W).

Each module can be switched off for ablations (``model.msa``, ``model.wavelet: none``, ``model.ss2d``,
``model.window_attention``): a switched-off module is the identity, and SS2D blocks become their scan-free
twin (``ConvMixBlock``: SS2D's projections around a gated depthwise convolution). The parameter names of
the modules kept do not change."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ssmseg.errors import InputError
from ssmseg.models.layers.attention import MultiScaleAttention, WindowAttention
from ssmseg.models.layers.conv import ConvBlock, ResBlock, Up, context_block, norm
from ssmseg.models.layers.wavelet import WaveletConv


class CMTUNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depth: int = 3,
        d_state: int = 16,
        expand: int = 2,
        wavelet: str = "haar",
        window: int = 8,
        dropout: float = 0.0,
        encoder_weights: str | None = None,
        d_conv: int = 3,
        msa: bool = True,
        ss2d: bool = True,
        window_attention: bool = True,
    ) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, chans[0], 3, padding=1, bias=False), norm(chans[0]), nn.GELU())
        self.encoder = nn.ModuleList([ResBlock(chans[0], chans[0])])
        for i in range(depth):
            stage = [ResBlock(chans[i], chans[i + 1], stride=2)]
            if i >= depth - 2:  # global context where the map is small
                ch = chans[i + 1]
                stage.append(context_block(ch, d_state, expand, d_conv, ss2d))
            self.encoder.append(nn.Sequential(*stage))
        self.wavelet = WaveletConv(chans[-1], wavelet) if wavelet != "none" else nn.Identity()
        self.msa = MultiScaleAttention(chans[-1]) if msa else nn.Identity()
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.win = nn.ModuleList(
            WindowAttention(chans[i], window) if window_attention else nn.Identity() for i in reversed(range(depth))
        )
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Sequential(ConvBlock(chans[0], chans[0]), nn.Conv2d(chans[0], num_classes, 1))
        if encoder_weights:
            self.load_encoder(Path(encoder_weights))

    def load_encoder(self, path: Path) -> None:
        """Load local encoder weights (nothing is downloaded); keys as in ``encoder.*``/``stem.*``."""
        if not path.is_file():
            raise InputError(f"encoder weights '{path}' not found; give a local file in model.encoder_weights")
        state = torch.load(path, map_location="cpu", weights_only=True)
        mine = {k: v for k, v in state.items() if k.startswith(("encoder.", "stem."))}
        if not mine:
            raise InputError(f"'{path}' holds no 'encoder.*' or 'stem.*' weights for cmt_unet")
        self.load_state_dict(mine, strict=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        y = self.stem(x)
        for stage in self.encoder:
            y = stage(y)
            skips.append(y)
        y = self.msa(self.wavelet(skips.pop()))
        for up, win in zip(self.up, self.win, strict=True):
            y = win(up(y, skips.pop()))
        return self.head(self.drop(y))
