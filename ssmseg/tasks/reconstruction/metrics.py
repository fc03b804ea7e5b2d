"""Reconstruction metrics, in torch, per field, on unobserved pixels or on the whole field.

Shapes: fields ``(B, C, H, W)``, observed masks ``(B, 1, H, W)`` or ``(B, H, W)`` bool (True = observed),
K samples ``(K, B, C, H, W)``. ``data_range`` is PSNR's MAX and SSIM's L: the value range of the training
fields (``FieldStats.data_range``) in the units the fields are given in.

- PSNR = 10 log10(MAX^2 / MSE) per field, MSE floored at MAX^2 * 1e-10 (so at most 100 dB, never inf).
- SSIM: Wang et al. (2004) with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, weighted
  (not sample-corrected) moments, in float64; the map is computed at every pixel with reflect padding, so
  it can be averaged over any region (the unobserved pixels, or the whole field); channels are averaged.
- ``reconstruction_sums`` gives additive sums (sums over fields and pixels, and counts), so a DDP
  reduction is one all_reduce(sum) per key and ``metrics_from_sums`` turns them into means.
- K samples: their mean, per-pixel std, and calibration (the share of unobserved true values inside the
  samples' central 90% interval).
- Power spectrum: radially averaged, and its mean relative error; smooth outputs lose high-frequency
  power, noisy ones gain it, and PSNR sees neither.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PSNR_MSE_FLOOR = 1e-10
HIGH_BAND = (0.25, 0.5)  # cycles per pixel: the upper half of the frequencies up to Nyquist


def _region(observed: Tensor | None, like: Tensor, unobserved: bool) -> Tensor:
    """(B, 1, H, W) float weights: 1 where a pixel counts."""
    if observed is None:
        return torch.ones_like(like[:, :1])
    m = observed if observed.ndim == 4 else observed[:, None]
    return (~m if unobserved else torch.ones_like(m)).to(like.dtype)


def _sq_err(pred: Tensor, target: Tensor, region: Tensor) -> tuple[Tensor, Tensor]:
    sq = ((pred - target) ** 2 * region).flatten(1).sum(1)
    return sq, region.flatten(1).sum(1) * pred.shape[1]


def mse(pred: Tensor, target: Tensor, observed: Tensor | None = None, unobserved: bool = True) -> Tensor:
    """(B,) mean squared error per field, on unobserved pixels (``observed`` given and ``unobserved``) or
    the whole field."""
    sq, n = _sq_err(pred, target, _region(observed, pred, unobserved))
    return sq / n.clamp_min(1)


def rmse(pred: Tensor, target: Tensor, observed: Tensor | None = None, unobserved: bool = True) -> Tensor:
    """(B,) root mean squared error per field (see ``mse``)."""
    return mse(pred, target, observed, unobserved).sqrt()


def psnr(
    pred: Tensor, target: Tensor, data_range: float, observed: Tensor | None = None, unobserved: bool = True
) -> Tensor:
    """(B,) PSNR in dB per field, MAX = ``data_range`` (see ``mse`` for the region)."""
    floor = data_range**2 * PSNR_MSE_FLOOR
    return 10 * torch.log10(data_range**2 / mse(pred, target, observed, unobserved).clamp_min(floor))


def _gaussian_1d(dtype: torch.dtype, device: torch.device) -> Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_map(pred: Tensor, target: Tensor, data_range: float) -> Tensor:
    """(B, C, H, W) SSIM at every pixel (Gaussian window, reflect padding). Fields need H, W >= 6."""
    b, c, h, w = pred.shape
    pad = SSIM_WINDOW // 2
    if min(h, w) <= pad:
        raise ValueError(f"SSIM needs fields larger than {pad} pixels each way; got {h}x{w}")
    dtype = torch.float64  # E[x^2] - E[x]^2 cancels badly in float32 (1e-4 relative SSIM error)
    x, y = pred.to(dtype).reshape(b * c, 1, h, w), target.to(dtype).reshape(b * c, 1, h, w)
    g = _gaussian_1d(dtype, pred.device)
    moments = torch.cat([x, y, x * x, y * y, x * y])
    blurred = F.pad(moments, (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(F.conv2d(blurred, g.reshape(1, 1, -1, 1)), g.reshape(1, 1, 1, -1))  # separable window
    mx, my, exx, eyy, exy = blurred.chunk(5)
    vx, vy, cxy = exx - mx**2, eyy - my**2, exy - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.reshape(b, c, h, w).to(pred.dtype if pred.is_floating_point() else torch.float32)


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float,
    observed: Tensor | None = None,
    unobserved: bool = True,
    smap: Tensor | None = None,
) -> Tensor:
    """(B,) mean SSIM per field over the region (see ``mse``), channels averaged. ``smap``: a precomputed
    ``ssim_map(pred, target, data_range)``, to average one map over several regions."""
    region = _region(observed, pred, unobserved)
    s = (ssim_map(pred, target, data_range) if smap is None else smap) * region
    return s.flatten(1).sum(1) / (region.flatten(1).sum(1) * pred.shape[1]).clamp_min(1)


def reconstruction_sums(pred: Tensor, target: Tensor, observed: Tensor, data_range: float) -> dict[str, Tensor]:
    """Additive float64 sums for one batch; reduce with a sum, turn into metrics with ``metrics_from_sums``.

    ``fields``; per-field sums of ``psnr``/``ssim``/``spec_err``/``spec_err_high`` on unobserved pixels
    (spectra: whole field) and ``psnr_all``/``ssim_all`` on the whole field; pooled ``sq_err``/``count``
    (unobserved values) and ``sq_err_all``/``count_all``."""
    sums = {"fields": torch.tensor(float(pred.shape[0]), dtype=torch.float64, device=pred.device)}
    smap = ssim_map(pred, target, data_range)
    for suffix, unobs in (("", True), ("_all", False)):
        region = _region(observed, pred, unobs)
        sq, n = _sq_err(pred, target, region)
        sums[f"sq_err{suffix}"] = sq.double().sum()
        sums[f"count{suffix}"] = n.double().sum()
        sums[f"psnr{suffix}"] = psnr(pred, target, data_range, observed, unobs).double().sum()
        sums[f"ssim{suffix}"] = ssim(pred, target, data_range, observed, unobs, smap).double().sum()
    sums["spec_err"] = spectrum_error(pred, target).double().sum()
    sums["spec_err_high"] = spectrum_error(pred, target, HIGH_BAND).double().sum()
    return sums


def metrics_from_sums(sums: dict[str, Tensor]) -> dict[str, float]:
    """Means from ``reconstruction_sums`` (and ``sample_sums``) after any reduction: per-field means of PSNR,
    SSIM and spectrum errors; RMSE pooled over all counted values; ``coverage`` when sample sums are there."""
    n = float(sums["fields"])
    out = {}
    for key in ("psnr", "psnr_all", "ssim", "ssim_all", "spec_err", "spec_err_high"):
        if key in sums:
            out[key] = float(sums[key]) / max(n, 1.0)
    for suffix in ("", "_all"):
        if f"sq_err{suffix}" in sums:
            out[f"rmse{suffix}"] = math.sqrt(float(sums[f"sq_err{suffix}"]) / max(float(sums[f"count{suffix}"]), 1.0))
    if "covered" in sums:
        out["coverage"] = float(sums["covered"]) / max(float(sums["coverage_count"]), 1.0)
        out["spread"] = float(sums["spread"]) / max(float(sums["coverage_count"]), 1.0)
    return out


# ---------------------------------------------------------------------------------------------------------------
# K samples per field


def sample_statistics(samples: Tensor, target: Tensor, observed: Tensor, interval: float = 0.9) -> dict[str, Tensor]:
    """Statistics of K samples (K, B, C, H, W) of each field.

    ``mean`` and ``std`` (B, C, H, W) per pixel (std with K - 1; zero for K = 1); ``coverage`` (B,): the
    share of unobserved true values inside the samples' central ``interval`` (per pixel, between the
    (1 - interval)/2 and (1 + interval)/2 quantiles, linearly interpolated). A calibrated sampler reaches
    ``interval`` only as K grows (the empirical interval of few samples is too narrow on average): compare
    coverages at one K, and use K >= 20 to judge calibration. ``covered``/``count``: additive sums."""
    lo_q, hi_q = (1 - interval) / 2, (1 + interval) / 2
    k = samples.shape[0]
    x = samples.float() if samples.dtype in (torch.float16, torch.bfloat16) else samples
    q = torch.quantile(x, torch.tensor([lo_q, hi_q], dtype=x.dtype, device=x.device), dim=0)
    inside = ((target >= q[0]) & (target <= q[1])).to(x.dtype)
    region = _region(observed, target, True)
    covered = (inside * region).flatten(1).sum(1)
    count = region.flatten(1).sum(1) * target.shape[1]
    std = x.std(0) if k > 1 else torch.zeros_like(x[0])
    return {"mean": x.mean(0), "std": std, "coverage": covered / count.clamp_min(1), "covered": covered, "count": count}


def sample_sums(samples: Tensor, target: Tensor, observed: Tensor, interval: float = 0.9) -> dict[str, Tensor]:
    """Additive sums for calibration: ``covered`` and ``coverage_count`` (unobserved values), and ``spread``
    (sum of per-pixel sample std over them)."""
    stats = sample_statistics(samples, target, observed, interval)
    region = _region(observed, target, True)
    return {
        "covered": stats["covered"].double().sum(),
        "coverage_count": stats["count"].double().sum(),
        "spread": (stats["std"] * region).double().sum(),
    }


# ---------------------------------------------------------------------------------------------------------------
# Power spectrum


def radial_power_spectrum(x: Tensor) -> tuple[Tensor, Tensor]:
    """(frequencies (n,), power (B, n)): the power spectrum of each field (B, C, H, W) or (H, W) -> B = 1,
    mean removed and a 2D Hann window applied (fields are not periodic), averaged over channels and over
    rings of width 1/max(H, W) cycles per pixel, from the first ring above 0 up to Nyquist (0.5)."""
    if x.ndim == 2:
        x = x[None, None]
    b, _, h, w = x.shape
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    window = torch.outer(
        torch.hann_window(h, periodic=False, dtype=dtype, device=x.device),
        torch.hann_window(w, periodic=False, dtype=dtype, device=x.device),
    )
    x = (x - x.mean(dim=(2, 3), keepdim=True)) * window
    power = torch.fft.fft2(x).abs().square().mean(1)  # (B, H, W)
    fy = torch.fft.fftfreq(h, dtype=dtype, device=x.device)
    fx = torch.fft.fftfreq(w, dtype=dtype, device=x.device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    width = 1.0 / max(h, w)
    ring = torch.round(radius / width).long()
    n = max(h, w) // 2
    keep = (ring >= 1) & (ring <= n)
    idx = ring[keep] - 1
    sums = torch.zeros(b, n, dtype=dtype, device=x.device).index_add_(1, idx, power[:, keep])
    counts = torch.zeros(n, dtype=dtype, device=x.device).index_add_(0, idx, torch.ones_like(idx, dtype=dtype))
    freqs = torch.arange(1, n + 1, dtype=dtype, device=x.device) * width
    return freqs, sums / counts.clamp_min(1)


def spectrum_error(pred: Tensor, target: Tensor, band: tuple[float, float] = (0.0, 0.5)) -> Tensor:
    """(B,) log-spectral distance in dB: the mean over the rings whose frequency lies in ``band`` (cycles per
    pixel) of |10 log10(P_pred / P_target)| of the radially averaged power spectra. Both spectra are floored
    at 1e-6 of the larger of the two mean ring powers: a smooth field has almost no power at high frequencies,
    and a relative error there would explode while saying nothing; added noise or wiggles still raise it
    clearly. So every ring counts at most 60 dB and the error is always finite, a constant field included."""
    freqs, p_pred = radial_power_spectrum(pred.double())
    _, p_true = radial_power_spectrum(target.double())
    sel = (freqs > band[0]) & (freqs <= band[1])
    mean_power = torch.maximum(p_true.mean(1, keepdim=True), p_pred.mean(1, keepdim=True))
    floor = (mean_power * 1e-6).clamp_min(torch.finfo(p_true.dtype).tiny)
    ratio = p_pred[:, sel].clamp_min(floor) / p_true[:, sel].clamp_min(floor)
    return (10 * torch.log10(ratio)).abs().mean(1).to(pred.dtype)
