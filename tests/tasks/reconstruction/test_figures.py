"""Sweep figures: baseline labels never overlap, and the examples panel shows the best settings."""

from __future__ import annotations

import itertools

import pytest

from ssmseg.tasks.reconstruction.figures import label_positions


@pytest.mark.parametrize("values", [[20.0, 20.05, 20.1, 25.0], [1.0, 2.0, 3.0], [5.0], [], [3.0, 3.0, 3.0, 3.0]])
def test_labels_keep_their_order_and_a_gap(values):
    gap = 0.2
    ys = label_positions(values, gap)
    assert len(ys) == len(values)
    assert all(b - a >= gap - 1e-9 for a, b in itertools.pairwise(ys))
    for v, y in zip(values, ys, strict=True):  # far labels stay on their line, close ones nearby
        assert abs(v - y) <= gap * len(values)
    if values == [1.0, 2.0, 3.0]:
        assert ys == values


def test_examples_panel_shows_the_best_setting(tmp_path):
    import torch

    from ssmseg.tasks.reconstruction.figures import examples_panel
    from ssmseg.tasks.reconstruction.sweep_plan import Setting

    steps = [1, 2, 4, 8, 16, 32, 64]
    settings = {
        Setting("euler", s): {
            "sample": torch.rand(2, 1, 8, 8),
            "mean": torch.rand(2, 1, 8, 8),
            "std": torch.rand(2, 1, 8, 8),
        }
        for s in steps
    }
    rows = [
        {
            "solver": "euler",
            "steps": s,
            "nfe": s,
            "psnr_mean": 20.0 + (s == 4),
            "psnr_sample": 19.0 + (s == 2),
            "solver_error": 1.0 / s,
        }
        for s in steps
    ]
    examples = {"settings": settings, "truth": torch.rand(2, 1, 8, 8), "observed": torch.rand(2, 1, 8, 8) < 0.2}
    titles = examples_panel(tmp_path / "ex.png", rows, [], examples, {}, 4)
    assert (tmp_path / "ex.png").is_file()
    shown = [t.split(" (")[0] for t in titles]
    assert "euler 4" in shown and "euler 2" in shown  # best mean of K, best single sample: not on the log grid
