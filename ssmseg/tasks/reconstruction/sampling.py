"""Sampling a trained field model: velocity closures, K-sample solves with counted NFE, and the model of a
checkpoint. Shared by validation, ``ssmseg eval`` and ``ssmseg sweep-steps``.

Shapes: fields (B, C, H, W) in normalised units; observed masks (B, 1, H, W) bool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssmseg.config.schema import ModelConfig
from ssmseg.data.fields import FieldStats
from ssmseg.errors import InputError
from ssmseg.tasks.reconstruction.path import finish
from ssmseg.tasks.reconstruction.solvers import CountingVelocity, solve


def velocity_of(model: nn.Module, values: Tensor, observed: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """v(x, t) for the ODE solvers: the model conditioned on the observed values (zero elsewhere)."""
    mask = observed.to(values.dtype)
    cond = values * mask

    def v(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t.to(x.dtype).expand(x.shape[0]), cond, mask).to(x.dtype)

    return v


def sample_noise(indices: Tensor, k: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """(K, B, C, H, W) starting noise; sample ``s`` of field ``j`` comes from (seed, j, 100 + s) alone, so
    every solver and step count starts from the same noise."""
    out = np.stack(
        [
            np.stack([np.random.default_rng([seed, int(j), 100 + s]).standard_normal(shape) for j in indices.tolist()])
            for s in range(k)
        ]
    )
    return torch.from_numpy(out.astype(np.float32))


def draw_samples(
    model: nn.Module,
    values: Tensor,
    observed: Tensor,
    noise: Tensor,
    solver: str,
    steps: int,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> tuple[Tensor, int]:
    """K solves from the K noises (K, B, C, H, W); returns the samples with observed pixels set to their
    values, and the NFE of one solve (counted by wrapping the model, never inferred from ``steps``)."""
    counter = CountingVelocity(velocity_of(model, values, observed))
    samples = []
    for x0 in noise:
        counter.reset()
        samples.append(finish(solve(counter, x0.to(values.device), solver, steps, atol, rtol), values, observed))
    return torch.stack(samples), counter.nfe


def load_field_model(state: dict[str, Any], device: torch.device) -> tuple[nn.Module, FieldStats]:
    """The checkpoint's field model on ``device`` (eval mode) and its training statistics."""
    from ssmseg.models import build_model

    if state.get("task") != "reconstruction":
        raise InputError(f"the checkpoint is a {state.get('task', 'segmentation')} model; give a reconstruction run")
    try:
        model_cfg = ModelConfig.model_validate(state["config"]["model"])
    except Exception as exc:
        raise InputError(f"the checkpoint's model settings are not valid here ({exc}); use a matching ssmseg") from exc
    model = build_model(model_cfg, state["in_channels"], 0)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise InputError(f"the checkpoint's weights do not fit model '{model_cfg.name}' ({str(exc)[:120]})") from exc
    return model.to(device).eval(), FieldStats.from_dict(state["stats"])
