"""FieldUNet: the grid flow-matching model for sparse-field reconstruction.

    forward(x_t (B, C, H, W), t (B,), observed (B, C, H, W), mask (B, 1, H, W)) -> velocity (B, C, H, W)
    forward(..., return_clean=True) -> the clean estimate x1_hat (B, C, H, W) the velocity is made from

It predicts the clean field and returns the velocity of the straight path towards it,
``v = (x1_hat - x_t) / (1 - t)``, so an Euler step of size 1 - t lands on ``x1_hat`` and one step from t = 0
is the posterior-mean estimate. ``x1_hat`` is built so the network cannot lose to the classical floor:

- it works in per-field units from the observed pixels alone (``field_inputs.field_frame``: location and
  scale), so brightness, contrast and units of the data do not matter; outputs are mapped back;
- its input holds, per pixel, x_t (in field units), the observed value and mask, the normalised convolution of
  the observations at ``interp_widths`` (times the observation spacing) with their certainties, and x, y in
  [0, 1] (pixel centres);
- it predicts a correction to the middle normalised convolution (the output layer starts near zero, so an
  untrained model is that interpolant), bounded to the field's observed range widened by ``bound_margin``
  times its span (None: unbounded).

A UNet of residual convolution blocks, with SS2D blocks (four-direction selective scans; ``ss2d=False``:
their scan-free twins, about 3x faster on a CPU) after the convolutions of every down-sampled stage, maps
the input to the correction. A time embedding (sinusoidal + MLP) sets a scale and shift (FiLM) inside every
convolution block. Any size: the input is zero-padded at the
bottom and right to a multiple of 2**depth (padding reads as "unobserved") and the output cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.field_inputs import clean_from_correction, stem_channels, stem_inputs, velocity_to
from ssmseg.models.layers.conv import context_block, norm
from ssmseg.models.layers.embed import TimeEmbedding


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
    """Clean field (and the velocity towards it) from [x_t, observed, mask, interpolants, coordinates], in
    per-field units (module docstring)."""

    predicts_clean = True  # the task trains x1_hat (return_clean=True) rather than the velocity
    per_field_units = True  # data in any affine units gives the same answer in those units

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
        interp_widths: tuple[float, ...] = (0.5, 1.0, 2.0),
        bound_margin: float | None = 0.25,
        ss2d: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.depth = in_channels, depth
        self.interp_widths, self.bound_margin = tuple(interp_widths), bound_margin
        n_interp = len(self.interp_widths)
        chans = [width * 2**i for i in range(depth + 1)]
        self.time = nn.Sequential(TimeEmbedding(time_dim), nn.SiLU())
        self.stem = FiLMBlock(stem_channels(in_channels, n_interp), chans[0], time_dim, dropout)
        self.down = nn.ModuleList(FiLMBlock(chans[i], chans[i + 1], time_dim, dropout) for i in range(depth))
        self.scan = nn.ModuleList(context_block(chans[i + 1], d_state, expand, d_conv, ss2d) for i in range(depth))
        self.up = nn.ModuleList(
            FiLMBlock(chans[i + 1] + chans[i], chans[i], time_dim, dropout) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(chans[0], in_channels, 1)
        nn.init.normal_(self.head.weight, std=1e-3)  # starts at the interpolant
        nn.init.zeros_(self.head.bias)

    def inputs(self, x_t: torch.Tensor, t: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor):
        """(network input (B, 5C + 6 with three widths, H, W), base z (B, C, H, W), location, scale)."""
        return stem_inputs(x_t, t, observed, mask, self.interp_widths)

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        observed: torch.Tensor,
        mask: torch.Tensor,
        return_clean: bool = False,
    ) -> torch.Tensor:
        h, w = x_t.shape[-2:]
        x, base, loc, scale = self.inputs(x_t, t, observed, mask)
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
        z = base + self.head(y)[..., :h, :w]
        clean = clean_from_correction(z, observed, mask, loc, scale, self.bound_margin)
        return clean if return_clean else velocity_to(clean, x_t, t)
