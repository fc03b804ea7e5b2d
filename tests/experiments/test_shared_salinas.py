"""The fast preset trains on the real Salinas-A scene (skipped without ../shared)."""

from __future__ import annotations

import json

from ssmseg.config import build_config
from ssmseg.data.prepare import prepare
from ssmseg.experiments.train import train


def test_fast_preset_on_salinas_a(shared_data, tmp_path):
    root = shared_data / "hyperspectral" / "salinas_a"
    prep = {
        "images": [str(root / "SalinasA_corrected.mat")],
        "masks": [str(root / "SalinasA_gt.mat")],
        "pair_pattern": "^(SalinasA)_",
        "class_map": {1: 0, 10: 1, 11: 2, 12: 3, 13: 4, 14: 5},
        "ignore_values": [0],
        "split": {"block_size": 16, "folds": 3},
    }
    cfg = build_config(preset="fast", explicit={"data": {"crop_size": 16}, "prep": prep})
    dataset = prepare(cfg, tmp_path / "salinas").out
    run = build_config(
        preset="fast",
        explicit={
            "data": {"crop_size": 16, "dataset": str(dataset)},
            "runtime": {"out_dir": str(tmp_path / "runs"), "name": "salinas", "device": "cpu"},
        },
    )
    result = train(run)
    counts = json.loads((dataset / "manifest.json").read_text())["class_counts"]["val"]
    present = [c for c in counts if c]
    majority_miou = max(present) / sum(present) / len(present)
    assert len(result.history) == 10 and result.best["value"] > majority_miou + 0.1
    assert result.history[-1]["train/loss"] < result.history[0]["train/loss"]
