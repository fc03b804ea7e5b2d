"""A batch whose pixels are all ignored is nothing to learn from, not a divergence: every loss gives 0 and
finite gradients (torch's mean cross-entropy gives NaN, which the guard reported as 'training diverged')."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssmseg.config.schema import LossConfig
from ssmseg.tasks.segmentation.losses import build_loss


@pytest.mark.parametrize("name", ["ce", "dice", "ce_dice", "focal"])
def test_all_ignored_batch_gives_zero_loss_and_finite_gradients(name):
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = build_loss(LossConfig(name=name), 255, torch.tensor([1.0, 2.0, 0.5]))(logits, torch.full((2, 8, 8), 255))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_still_equals_torchs_mean(smoothing):
    logits, target = torch.randn(2, 4, 6, 6), torch.randint(0, 4, (2, 6, 6))
    target[0, :3] = 255
    weight = torch.tensor([1.0, 0.5, 2.0, 1.5])
    for w in (None, weight):
        ours = build_loss(LossConfig(name="ce", label_smoothing=smoothing), 255, w)(logits, target)
        ref = F.cross_entropy(logits, target, weight=w, ignore_index=255, label_smoothing=smoothing)
        torch.testing.assert_close(ours, ref)
