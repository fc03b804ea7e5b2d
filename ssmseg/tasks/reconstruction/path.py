"""The linear flow-matching path for sparse-field reconstruction, in normalised units.

    x_t = t x1 + (1 - t) x0,   x0 ~ N(0, I),   t in [0, 1],   target velocity u = x1 - x0.

Shapes: fields ``(B, C, H, W)``, observed masks ``(B, 1, H, W)`` bool (True = observed), times ``(B,)``.

Observed values. The model is *conditioned* on the observed values (``conditioning`` gives the usual
input: the values at observed pixels, zero elsewhere, and the mask as one more channel); the path itself
runs over every pixel, observed or not. The loss counts only unobserved pixels, where the answer is not
given. At the end of sampling (``finish``) observed pixels are set to their observed values, so a
reconstruction never changes what was measured. Nothing is imposed at intermediate times.
"""

from __future__ import annotations

import torch
from torch import Tensor


def draw_times(batch: int, generator: torch.Generator) -> Tensor:
    """t ~ U[0, 1), (batch,) float32 on the generator's device."""
    return torch.rand(batch, generator=generator, device=generator.device)


def draw_noise(x1: Tensor, generator: torch.Generator) -> Tensor:
    """x0 ~ N(0, I) shaped like x1 (normalised units), from ``generator`` (on x1's device)."""
    return torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)


def _bt(t: Tensor, x: Tensor) -> Tensor:
    return t.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """x_t = t x1 + (1 - t) x0."""
    tb = _bt(t, x1)
    return tb * x1 + (1 - tb) * x0


def target_velocity(x0: Tensor, x1: Tensor) -> Tensor:
    """u = x1 - x0 (constant along the straight path)."""
    return x1 - x0


def clean_estimate(xt: Tensor, v: Tensor, t: Tensor) -> Tensor:
    """One-step estimate of x1 from x_t and a velocity: x_t + (1 - t) v. With the exact conditional
    expected velocity this is the posterior mean E[x1 | x_t, observed]."""
    return xt + (1 - _bt(t, xt)) * v


def conditioning(values: Tensor, observed: Tensor) -> Tensor:
    """(B, C + 1, H, W): observed values (zero at unobserved pixels) and the mask as a float channel."""
    m = observed.to(values.dtype)
    return torch.cat([values * m, m], dim=1)


def finish(x: Tensor, values: Tensor, observed: Tensor) -> Tensor:
    """The end of sampling: observed pixels set to their values, the others kept."""
    return torch.where(observed, values, x)


def masked_sq_error(pred: Tensor, target: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
    """Per field: (sum of squared errors over unobserved pixels and all channels, count of those values),
    both (B,) float32 or wider. Every unobserved pixel counts; nothing is subsampled."""
    unobserved = (~observed).to(pred.dtype)
    sq = ((pred - target) ** 2 * unobserved).flatten(1).sum(1)
    count = unobserved.flatten(1).sum(1) * pred.shape[1]
    return sq, count


def masked_mse(pred: Tensor, target: Tensor, observed: Tensor) -> Tensor:
    """Mean over fields of each field's MSE on its unobserved pixels: every field weighs the same whatever
    its number of unobserved pixels (a field with none would be 0/0; masks from ``observed_masks`` always
    leave one)."""
    sq, count = masked_sq_error(pred, target, observed)
    return (sq / count.clamp_min(1)).mean()


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation per field, (B,): mean absolute difference between vertical and between
    horizontal neighbours, summed over the two directions, averaged over channels."""
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
    return dv + dh


def flow_matching_loss(
    v_pred: Tensor, x0: Tensor, x1: Tensor, t: Tensor, observed: Tensor, tv_weight: float = 0.0
) -> dict[str, Tensor]:
    """The training loss for a predicted velocity at (x_t, t).

    ``mse``: ``masked_mse`` of v_pred against x1 - x0 on unobserved pixels; ``tv``: mean total variation of
    the one-step clean estimate (x_t + (1 - t) v_pred) when ``tv_weight`` > 0, else 0;
    ``loss`` = mse + tv_weight * tv. Also the additive sums ``sq_err`` and ``count`` (summed over the batch)
    for logging and DDP reduction.
    """
    sq, count = masked_sq_error(v_pred, target_velocity(x0, x1), observed)
    mse = (sq / count.clamp_min(1)).mean()
    if tv_weight > 0:
        tv = total_variation(clean_estimate(interpolate(x0, x1, t), v_pred, t)).mean()
        loss = mse + tv_weight * tv
    else:
        tv = mse.new_zeros(())
        loss = mse
    return {
        "loss": loss,
        "mse": mse.detach(),
        "tv": tv.detach(),
        "sq_err": sq.sum().detach(),
        "count": count.sum().detach(),
    }


LOG_MSE_FLOOR = 1e-4  # log_mse: log(mse + this), per-field units (40 dB below the field's own spread)


def clean_loss(
    clean: Tensor, x1: Tensor, observed: Tensor, scale: Tensor, tv_weight: float = 0.0, pooling: str = "mse"
) -> Tensor:
    """The loss of a clean estimate (B, C, H, W): each field's MSE of (clean - x1) / scale on unobserved
    pixels, scale (B, C, 1, 1) the field's own (from its observed values), so every field weighs alike whatever
    its contrast; pooled over the batch as their mean (``pooling="mse"``) or the mean of log(MSE + 1e-4)
    (``"log_mse"``: mean PSNR up to sign and constant, so dense fields with small errors are not drowned
    by sparse ones); plus ``tv_weight`` times the estimate's mean total variation in the same units."""
    sq, count = masked_sq_error(clean / scale, x1 / scale, observed)
    per_field = sq / count.clamp_min(1)
    if pooling == "log_mse":
        loss = torch.log(per_field + LOG_MSE_FLOOR).mean()
    elif pooling == "mse":
        loss = per_field.mean()
    else:
        raise ValueError(f"unknown pooling '{pooling}'; valid: mse, log_mse")
    if tv_weight > 0:
        loss = loss + tv_weight * total_variation(clean / scale).mean()
    return loss
