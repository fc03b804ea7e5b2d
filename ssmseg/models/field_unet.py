"""FieldUNet: the grid flow-matching model for sparse-field reconstruction.

    forward(x_t (B, C, H, W), t (B,), observed (B, C, H, W), mask (B, 1, H, W)) -> velocity (B, C, H, W)

The input is every pixel's [x_t, observed value (0 where unobserved), mask, x and y in [0, 1]] (pixel centres,
so any H x W is the unit square). A UNet of residual convolution blocks, with SS2D blocks (four-direction
selective scans) after the convolutions of every down-sampled stage, maps it to the velocity. A time
embedding (sinusoidal + MLP) sets a scale and shift (FiLM) inside every convolution block. Any size: the
input is zero-padded at the bottom and right to a multiple of 2**depth (padding reads as "unobserved") and
the output cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.conv import SS2DBlock, norm
from ssmseg.models.layers.embed import TimeEmbedding
from ssmseg.ssm.order import grid_coords


class FiLMBlock(nn.Module):
    """conv-norm-FiLM(t)-GELU-dropout-conv-norm, plus a (1x1 when the width changes) skip, then GELU."""

    def __init__(self, cin: int, cout: int, time_dim: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.n1 = norm(cout)
        self.film = nn.Linear(time_dim, 2 * cout)
        self.drop = nn.Dropout2d(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.n2 = norm(cout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb)[..., None, None].chunk(2, dim=1)
        y = F.gelu(self.n1(self.conv1(x)) * (1 + scale) + shift)
        y = self.n2(self.conv2(self.drop(y)))
        return F.gelu(y + self.skip(x))


class FieldUNet(nn.Module):
    """Velocity of a flow-matching path on a field from [x_t, observed, mask, coordinates] (module docstring)."""

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        depth: int = 3,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 3,
        time_dim: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels, self.depth = in_channels, depth
        chans = [width * 2**i for i in range(depth + 1)]
        self.time = nn.Sequential(TimeEmbedding(time_dim), nn.SiLU())
        self.stem = FiLMBlock(2 * in_channels + 3, chans[0], time_dim, dropout)
        self.down = nn.ModuleList(FiLMBlock(chans[i], chans[i + 1], time_dim, dropout) for i in range(depth))
        self.scan = nn.ModuleList(SS2DBlock(chans[i + 1], d_state, expand, d_conv=d_conv) for i in range(depth))
        self.up = nn.ModuleList(
            FiLMBlock(chans[i + 1] + chans[i], chans[i], time_dim, dropout) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], in_channels, 1)
        nn.init.normal_(self.head.weight, std=1e-3)  # small initial velocities
        nn.init.zeros_(self.head.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x_t.shape
        m = (mask > 0.5).to(x_t.dtype)
        coords = grid_coords(h, w, x_t.device).to(x_t.dtype).T.reshape(1, 2, h, w).expand(b, -1, -1, -1)
        x = torch.cat([x_t, observed * m, m, coords], dim=1)
        mult = 2**self.depth
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:  # zeros: padded pixels read as unobserved, with x_t = 0 and coordinates (0, 0)
            x = F.pad(x, (0, pw, 0, ph))
        temb = self.time(t)
        skips = [self.stem(x, temb)]
        for down, scan in zip(self.down, self.scan, strict=True):
            skips.append(scan(down(F.max_pool2d(skips[-1], 2), temb)))
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = up(torch.cat([y, skip], dim=1), temb)
        return self.head(y)[..., :h, :w]
