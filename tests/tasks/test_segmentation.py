"""Metrics against a hand-computed confusion matrix; losses; augmentation keeps image and mask aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssmseg.config.schema import AugmentConfig, LossConfig
from ssmseg.data.sampling import EpochSampler, balanced_weights
from ssmseg.tasks.segmentation.augment import augment
from ssmseg.tasks.segmentation.losses import build_loss, class_weights_from_counts, dice_loss
from ssmseg.tasks.segmentation.metrics import confusion, metrics_from_confusion


def test_confusion_and_metrics_by_hand():
    target = torch.tensor([0, 0, 0, 1, 1, 2, 255])
    pred = torch.tensor([0, 0, 1, 1, 2, 2, 0])
    cm = confusion(pred, target, 3, 255)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    m = metrics_from_confusion(cm, ["a", "b", "c"])
    assert m["oa"] == pytest.approx(4 / 6)
    # IoU: a 2/3, b 1/3, c 1/2
    assert m["miou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(1 / 2) and m["per_class"]["b"]["recall"] == pytest.approx(
        1 / 2
    )
    pe = (3 * 2 + 2 * 2 + 1 * 2) / 36
    assert m["kappa"] == pytest.approx((4 / 6 - pe) / (1 - pe))
    assert m["mean_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_dice_ignores_ignored_pixels_and_absent_classes():
    target = torch.tensor([[[0, 0], [255, 255]]])
    perfect = torch.tensor([[[[9.0, 9.0], [0.0, 0.0]], [[0.0, 0.0], [9.0, 9.0]]]])  # class 1 only where ignored
    assert dice_loss(perfect, target, 255) < 1e-3


def test_focal_is_per_pixel_and_below_ce():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    ce = build_loss(LossConfig(name="ce"), 255)(logits, target)
    focal = build_loss(LossConfig(name="focal", focal_gamma=2.0), 255)(logits, target)
    assert 0 < focal < ce
    assert build_loss(LossConfig(name="focal", focal_gamma=0.0), 255)(logits, target) == pytest.approx(
        ce.item(), rel=1e-5
    )


def test_auto_class_weights():
    w = class_weights_from_counts([100, 300, 0])
    assert w[2] == 0 and w[0] == pytest.approx(3 * w[1]) and w[:2].mean() == pytest.approx(1.0)


@pytest.mark.parametrize("bands", [1, 7])
def test_augment_keeps_image_and_mask_aligned(bands):
    mask = torch.arange(64).reshape(1, 8, 8).repeat(4, 1, 1)
    image = mask[:, None].float().repeat(1, bands, 1, 1)
    cfg = AugmentConfig(flips=True, rot90=True, scale_jitter=0.0)
    out_img, out_mask = augment(image, mask, cfg, torch.Generator().manual_seed(0), 255)
    assert torch.equal(out_img[:, 0].long(), out_mask)
    assert not torch.equal(out_mask, mask)  # something happened
    jitter = AugmentConfig(flips=False, rot90=False, brightness=0.1, contrast=0.1, noise_std=0.01, scale_jitter=0.2)
    img2, mask2 = augment(image, mask, jitter, torch.Generator().manual_seed(0), 255)
    assert img2.shape == image.shape and mask2.shape == mask.shape


def test_ranks_together_draw_the_single_process_batches():
    single = list(EpochSampler(10, seed=3, max_items=8))
    ranks = [list(EpochSampler(10, seed=3, rank=r, world=2, max_items=8)) for r in (0, 1)]
    assert sorted(single[:4]) == sorted(ranks[0][:2] + ranks[1][:2])
    s = EpochSampler(10, seed=3)
    s.set_epoch(1)
    assert list(s) != list(EpochSampler(10, seed=3))


def test_class_balanced_weights_make_each_class_equally_likely():
    # 4 patches, 3 classes: class 2 lives only in patch 3 (few pixels); patch 2 holds no labelled pixel.
    counts = np.array([[100, 0, 0], [60, 40, 0], [0, 0, 0], [90, 0, 10]])
    w = balanced_weights(counts, 1.0)
    # a class drawn uniformly (1/3 each), then a patch by its share of that class's pixels (by hand)
    assert np.allclose(w, [(100 / 250) / 3, (60 / 250 + 1) / 3, 0, (90 / 250 + 1) / 3])
    assert w.sum() == pytest.approx(1.0)
    assert (w * counts[:, 2]).sum() > (0.25 * counts[:, 2]).sum()  # more rare-class pixels per draw than uniform
    assert np.allclose(balanced_weights(counts, 0.0), 0.25)
    half = balanced_weights(counts, 0.5)
    assert np.allclose(half, 0.5 * 0.25 + 0.5 * w)


def test_weighted_sampler_draws_by_weight_reproducibly():
    w = [0.0, 0.0, 1.0, 3.0]
    draws = list(EpochSampler(4, seed=1, weights=w))
    assert len(draws) == 4 and set(draws) <= {2, 3} and draws == list(EpochSampler(4, seed=1, weights=w))
    many = EpochSampler(4000, seed=0, weights=[1.0] * 3000 + [3.0] * 1000)
    share = np.mean(np.array(list(many)) >= 3000)
    assert 0.45 < share < 0.55  # 3000 of 6000 weight units
    capped = EpochSampler(4000, seed=0, weights=[1.0] * 4000, max_items=10)
    assert len(list(capped)) == 10
    with pytest.raises(ValueError, match="weights"):
        EpochSampler(3, seed=0, weights=[0.0, 0.0, 0.0])


def test_scale_jitter_keeps_the_mask_on_the_image():
    """The image is drawn from the mask (value = 10 x class), so after a zoom the two must still agree."""
    # Blocks of 6 pixels: a zoom about the centre moves every edge (quadrants about the centre would not move).
    mask = ((torch.arange(32)[None, :] // 6 + torch.arange(32)[:, None] // 6) % 4).repeat(4, 1, 1)
    image = (mask.float() * 10)[:, None].repeat(1, 2, 1, 1)
    cfg = AugmentConfig(flips=False, rot90=False, scale_jitter=0.4)
    out, m = augment(image, mask, cfg, torch.Generator().manual_seed(3), ignore_index=255)
    value = out[:, 0] / 10
    # Pixels inside a block (not blended across a boundary by the bilinear resampling), labelled.
    pure = ((value - value.round()).abs() < 0.01) & (m != 255)
    assert pure.float().mean() > 0.2
    assert torch.equal(value.round()[pure].long(), m[pure])
    assert not torch.equal(m, mask)  # it did zoom


def test_the_built_in_data_is_the_tasks_own(tmp_path):
    from ssmseg.config import build_config
    from ssmseg.data.builtin import resolve_dataset
    from ssmseg.errors import ConfigError
    from ssmseg.tasks import task_life

    def never(cfg):
        raise AssertionError("a given dataset is not replaced by the built-in one")

    given = build_config(explicit={"data": {"dataset": str(tmp_path), "synthetic": "sinusoids"}})
    assert resolve_dataset(given, never) == tmp_path
    fields = build_config(explicit={"data": {"synthetic": "sinusoids"}})
    with pytest.raises(ConfigError, match=r"sinusoids are fields for task\.name reconstruction"):
        resolve_dataset(fields, task_life("segmentation").builtin_dataset)
    sources = build_config(explicit={"prep": {"images": ["a.tif"], "masks": ["a.tif"]}})
    with pytest.raises(ConfigError, match=r"prep\.images/prep\.masks are set but data\.dataset is empty"):
        resolve_dataset(sources, never)
