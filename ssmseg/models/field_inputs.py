"""What a field model starts from: per-field units taken from the observations alone, the cheap classical
answer (normalised convolution at a few widths) and bounds for the output. Shared by the field models.

Shapes: values (B, C, H, W) (any units; only observed pixels are read), mask (B, 1, H, W) float in {0, 1}.

- Per-field units: location = mean and scale = standard deviation of the observed values of each field and
  channel (``field_frame``), so brightness, contrast and sensor units do not change what the network sees.
  A field with no observation gets location 0 and scale 1; a constant one a scale floor.
- Normalised convolution (Knutsson and Westin 1993): ``G_s * (m z) / G_s * m`` with a Gaussian ``G_s``,
  zero padding (which is exact here: outside the field nothing is observed). The widths are multiples of
  the field's mean observation spacing ``sqrt(H W / n_observed)``, so one model serves 5% and 20% observed.
  The certainty ``G_s * m`` is given too, scaled by the spacing squared (about 1 where the density is typical).
- Bounds: the field's observed range widened by ``margin`` times its span on each side.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SCALE_FLOOR = 1e-3  # relative to the mean absolute observed value (plus an absolute 1e-6): constant fields
NC_FLOOR = 1e-6


def field_frame(values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(location, scale), each (B, C, 1, 1): mean and std of each field's observed values per channel."""
    n = mask.flatten(1).sum(1).reshape(-1, 1, 1, 1)
    count = n.clamp_min(1)
    loc = (values * mask).sum((2, 3), keepdim=True) / count
    var = ((values - loc) ** 2 * mask).sum((2, 3), keepdim=True) / count
    size = ((values.abs() * mask).sum((2, 3), keepdim=True) / count) * SCALE_FLOOR + 1e-6
    scale = torch.maximum(var.sqrt(), size)
    none = n == 0
    return torch.where(none, torch.zeros_like(loc), loc), torch.where(none, torch.ones_like(scale), scale)


def observation_spacing(mask: Tensor) -> Tensor:
    """(B,) mean distance between observations in pixels, sqrt(H W / n_observed) (n at least 1)."""
    h, w = mask.shape[-2:]
    return (h * w / mask.flatten(1).sum(1).clamp_min(1)).sqrt()


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian of width sigma[b] (pixels) over each field b of x (B, K, H, W), zero padding."""
    b, k, h, w = x.shape
    radius = int(min(math.ceil(3 * float(sigma.max())), max(h, w)))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-0.5 * (offsets[None] / sigma[:, None].to(x.dtype)) ** 2)
    g = (g / g.sum(1, keepdim=True)).repeat_interleave(k, 0)  # (B * K, 2r + 1)
    y = F.conv2d(x.reshape(1, b * k, h, w), g[:, None, None, :], padding=(0, radius), groups=b * k)
    y = F.conv2d(y, g[:, None, :, None], padding=(radius, 0), groups=b * k)
    return y.reshape(b, k, h, w)


def normalized_convolution(z: Tensor, mask: Tensor, widths: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """(values (B, len(widths) * C, H, W), certainties (B, len(widths), H, W)) of the normalised convolution
    of z (B, C, H, W) observed where mask (B, 1, H, W) at each width (times the observation spacing).
    Where no observation lies within reach the value is 0 (the per-field location when z is in field units)."""
    spacing = observation_spacing(mask)
    both = torch.cat([z * mask, mask], dim=1)
    values, certainty = [], []
    for width in widths:
        blurred = _blur(both, (width * spacing).clamp_min(0.3))
        num, den = blurred[:, :-1], blurred[:, -1:]
        values.append(num / den.clamp_min(NC_FLOOR) * (den > NC_FLOOR))
        certainty.append(den * spacing.reshape(-1, 1, 1, 1) ** 2)
    return torch.cat(values, 1), torch.cat(certainty, 1)


def observed_bounds(z: Tensor, mask: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """(low, high), each (B, C, 1, 1): the observed range of z per field and channel, widened by ``margin``
    times its span on each side (and by at least ``margin``, so a constant field may still move; fields
    with no observation: -inf, inf)."""
    big = torch.finfo(z.dtype).max
    lo = torch.where(mask > 0, z, torch.full_like(z, big)).amin((2, 3), keepdim=True)
    hi = torch.where(mask > 0, z, torch.full_like(z, -big)).amax((2, 3), keepdim=True)
    none = mask.flatten(1).sum(1).reshape(-1, 1, 1, 1) == 0
    pad = margin * (hi - lo).clamp_min(1.0)
    lo = torch.where(none, torch.full_like(lo, -math.inf), lo - pad)
    hi = torch.where(none, torch.full_like(hi, math.inf), hi + pad)
    return lo, hi


def stem_inputs(
    x_t: Tensor, t: Tensor, observed: Tensor, mask: Tensor, widths: tuple[float, ...]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """What a field model reads, per pixel, in per-field units: (inputs (B, (2 + W) C + 3 + W, H, W) with
    W = len(widths), base (B, C, H, W), location, scale (B, C, 1, 1)).

    inputs = [x_t, observed values, mask, normalised convolutions at ``widths``, their certainties, x, y];
    x_t is mapped as ``(x_t - t loc) / (t scale + 1 - t)`` so the path's noise stays about unit size;
    base = the middle normalised convolution (zeros without widths): what the model corrects."""
    b, c, h, w = x_t.shape
    m = (mask > 0.5).to(x_t.dtype)
    loc, scale = field_frame(observed, m)
    z_obs = (observed - loc) / scale * m
    tb = t.to(x_t.dtype).reshape(-1, 1, 1, 1)
    z_t = (x_t - tb * loc) / (tb * scale + (1 - tb))
    parts = [z_t, z_obs, m]
    base = torch.zeros_like(z_obs)
    if widths:
        nc, certainty = normalized_convolution(z_obs, m, widths)
        mid = len(widths) // 2
        base = nc[:, mid * c : (mid + 1) * c]
        parts += [nc, certainty]
    ys = (torch.arange(h, device=x_t.device, dtype=x_t.dtype) + 0.5) / h
    xs = (torch.arange(w, device=x_t.device, dtype=x_t.dtype) + 0.5) / w
    coords = torch.stack(torch.meshgrid(xs, ys, indexing="xy")).expand(b, -1, -1, -1)  # (B, 2, H, W): x, y
    return torch.cat([*parts, coords], dim=1), base, loc, scale


def stem_channels(in_channels: int, n_widths: int) -> int:
    """Channels of ``stem_inputs``' first output."""
    return (2 + n_widths) * in_channels + 3 + n_widths


def clean_from_correction(
    z: Tensor, observed: Tensor, mask: Tensor, loc: Tensor, scale: Tensor, margin: float | None
) -> Tensor:
    """z (B, C, H, W) in per-field units, clipped to the observed range +- ``margin`` times its span (None:
    unbounded), mapped back to data units."""
    if margin is not None:
        m = (mask > 0.5).to(z.dtype)
        lo, hi = observed_bounds((observed - loc) / scale, m, margin)
        z = torch.maximum(torch.minimum(z, hi), lo)
    return loc + scale * z


MIN_REMAINING_TIME = 1e-3  # v = (x1_hat - x_t) / max(1 - t, this): finite at t = 1 (RK4's and dopri5's last stage)


def velocity_to(clean: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
    """The straight path's velocity from x_t at time t (B,) to the clean estimate: (clean - x_t) / (1 - t)."""
    remaining = (1 - t.to(x_t.dtype)).clamp_min(MIN_REMAINING_TIME).reshape(-1, 1, 1, 1)
    return (clean - x_t) / remaining
