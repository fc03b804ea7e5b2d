"""The flow-matching path: interpolation, target velocity, masked loss, clean estimate, TV, observed values."""

from __future__ import annotations

import math

import pytest
import torch

from ssmseg.tasks.reconstruction.path import (
    clean_estimate,
    conditioning,
    draw_noise,
    draw_times,
    finish,
    flow_matching_loss,
    interpolate,
    masked_mse,
    masked_sq_error,
    target_velocity,
    total_variation,
)
from ssmseg.tasks.reconstruction.solvers import solve


def fields(b=3, c=2, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)


def test_path_endpoints_velocity_and_clean_estimate():
    x0, x1 = fields()
    t = torch.tensor([0.0, 0.3, 1.0])
    xt = interpolate(x0, x1, t)
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[2], x1[2])
    assert torch.allclose(xt[1], 0.3 * x1[1] + 0.7 * x0[1])
    u = target_velocity(x0, x1)
    # d x_t / dt is the target velocity; the exact velocity's one-step estimate is x1 itself
    assert torch.allclose((interpolate(x0, x1, t + 1e-3) - xt) / 1e-3, u, atol=1e-3)
    assert torch.allclose(clean_estimate(xt, u, t), x1, atol=1e-6)


def test_loss_is_per_field_mean_over_every_unobserved_pixel():
    pred = torch.zeros(2, 1, 2, 2)
    target = torch.zeros(2, 1, 2, 2)
    observed = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    observed[0, 0, 0, 0] = False  # field 0: one unobserved pixel, error 2 -> MSE 4
    target[0, 0, 0, 0] = 2.0
    observed[1, 0, 1, :] = False  # field 1: three unobserved pixels, errors 1 -> MSE 1
    observed[1, 0, 0, 1] = False
    target[1, 0, 1, :] = 1.0
    target[1, 0, 0, 1] = 1.0
    target[:, 0, 0, 0] += 100 * observed[:, 0, 0, 0]  # errors on observed pixels never count
    sq, count = masked_sq_error(pred, target, observed)
    assert sq.tolist() == [4.0, 3.0] and count.tolist() == [1.0, 3.0]
    assert masked_mse(pred, target, observed).item() == pytest.approx((4 + 1) / 2)  # not pooled (7 / 4)
    many = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    many[0, 0, 5, 7] = False  # a single unobserved pixel anywhere counts: nothing is subsampled
    assert masked_mse(torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 3.0), many).item() == 9.0


def test_channels_count_in_the_mean():
    pred, target = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    observed = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    sq, count = masked_sq_error(pred, target, observed)
    assert sq.item() == 48 and count.item() == 48 and masked_mse(pred, target, observed).item() == 1.0


def test_flow_matching_loss_and_tv():
    x0, x1 = fields()
    t = torch.rand(3)
    observed = torch.rand(3, 1, 6, 5) < 0.2
    exact = flow_matching_loss(target_velocity(x0, x1), x0, x1, t, observed, tv_weight=0.0)
    assert exact["loss"].item() == 0 and exact["count"].item() == 2 * (~observed).sum().item()
    v = torch.zeros_like(x0, requires_grad=True)
    out = flow_matching_loss(v, x0, x1, t, observed, tv_weight=0.5)
    tv = total_variation(clean_estimate(interpolate(x0, x1, t), v, t)).mean()
    assert out["tv"].item() == pytest.approx(tv.item()) and out["loss"].item() == pytest.approx(
        out["mse"].item() + 0.5 * tv.item()
    )
    out["loss"].backward()
    assert v.grad is not None and v.grad.abs().sum() > 0
    assert total_variation(torch.full((2, 1, 4, 4), 3.0)).tolist() == [0.0, 0.0]
    ramp = torch.arange(4.0).repeat(4, 1)[None, None]  # +1 per column, constant down the rows
    assert total_variation(ramp).item() == pytest.approx(1.0)


def test_conditioning_and_finish_keep_observed_values():
    x0, x1 = fields(c=1)
    observed = torch.rand(3, 1, 6, 5) < 0.3
    cond = conditioning(x1, observed)
    assert cond.shape == (3, 2, 6, 5)
    assert torch.equal(cond[:, :1][observed], x1[observed]) and (cond[:, :1][~observed] == 0).all()
    assert torch.equal(cond[:, 1:], observed.float())
    out = finish(x0, x1, observed)
    assert torch.equal(out[observed], x1[observed]) and torch.equal(out[~observed], x0[~observed])


def test_draws_follow_the_generator():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    x1 = torch.zeros(4, 1, 3, 3)
    assert torch.equal(draw_times(4, g1), draw_times(4, g2)) and torch.equal(draw_noise(x1, g1), draw_noise(x1, g2))
    t = draw_times(1000, g1)
    assert t.min() >= 0 and t.max() < 1 and t.shape == (1000,)


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_euler_on_the_conditional_velocity_lands_on_x1(steps):
    # For a known x1 the path's velocity at (x, t) is (x1 - x) / (1 - t): Euler reaches x1 exactly.
    x0, x1 = fields()
    x = solve(lambda x, t: (x1 - x) / (1 - t)[:, None, None, None], x0, "euler", steps)
    assert torch.allclose(x, x1, atol=1e-5)


def test_clean_loss_pools_fields_by_mean_mse_or_mean_log_mse():
    """Two fields with errors 0.1 and 0.01 (per-field units): mse weighs the sparse field's error 10x; log_mse is
    the mean of the logs, so halving either field's error lowers it by the same amount."""
    from ssmseg.tasks.reconstruction.path import LOG_MSE_FLOOR, clean_loss

    x1 = torch.zeros(2, 1, 4, 4)
    observed = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    clean = torch.stack([torch.full((1, 4, 4), 0.1**0.5), torch.full((1, 4, 4), 0.01**0.5)])
    scale = torch.ones(2, 1, 1, 1)
    assert float(clean_loss(clean, x1, observed, scale)) == pytest.approx(0.055)
    log = float(clean_loss(clean, x1, observed, scale, pooling="log_mse"))
    assert log == pytest.approx((math.log(0.1 + LOG_MSE_FLOOR) + math.log(0.01 + LOG_MSE_FLOOR)) / 2, rel=1e-5)
    halved = [clean.clone(), clean.clone()]
    halved[0][0] *= 0.5**0.5
    halved[1][1] *= 0.5**0.5
    drops = [log - float(clean_loss(h, x1, observed, scale, pooling="log_mse")) for h in halved]
    assert drops[0] == pytest.approx(drops[1], rel=0.02)
    with pytest.raises(ValueError, match="valid: mse, log_mse"):
        clean_loss(clean, x1, observed, scale, pooling="sum")


def test_the_field_loss_key_reaches_the_training_step(tmp_path):
    """reconstruction.field_loss acts: the same model, batch and draws give the mean of per-field MSEs with mse
    and the mean of their logs with log_mse, which (Jensen, fields with unequal errors) lies strictly below the
    log of the mean."""
    from ssmseg.config import build_config
    from ssmseg.data.builtin import prepare_sinusoids
    from ssmseg.tasks.reconstruction.path import LOG_MSE_FLOOR
    from ssmseg.tasks.reconstruction.task import ReconstructionTask

    base = {
        "task": {"name": "reconstruction"},
        "prep": {"fields": {"count": 20, "size": 16}},
        "model": {"name": "field_unet", "width": 8, "depth": 2},
    }
    losses = {}
    for pooling in ("mse", "log_mse"):
        cfg = build_config(explicit={**base, "reconstruction": {"field_loss": pooling}})
        task = ReconstructionTask(cfg, prepare_sinusoids(cfg, tmp_path / "ds").out)
        torch.manual_seed(0)
        model = task.build_model()
        batch = {"field": torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))}
        losses[pooling] = float(task.training_step(model, batch, torch.Generator().manual_seed(2)).loss)
    assert losses["log_mse"] < math.log(losses["mse"] + LOG_MSE_FLOOR) - 1e-4
