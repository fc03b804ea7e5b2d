"""The aerial preset on the shared Dubai tiles (skipped when absent): 54 image/mask pairs from the Dubai folder,
tiles 5-6 (and only they) as the held-out test scenes, and its palette the masks' (not classes.json's)."""

from __future__ import annotations

import glob
from pathlib import Path

from ssmseg.config import build_config
from ssmseg.data.pairing import find_pairs
from tests.data.test_shared_data import DUBAI_PALETTE


def test_aerial_preset_pairs_the_dubai_tiles_and_holds_out_tiles_5_and_6(shared_data, tmp_path, monkeypatch):
    cfg = build_config(preset="aerial")
    assert all(p.startswith("tile_") for p in [*cfg.prep.images, *cfg.prep.masks, *cfg.prep.split.test])
    monkeypatch.chdir(shared_data / "aerial" / "dubai")  # the preset names the tiles from the Dubai folder
    pairs = find_pairs(cfg.prep)
    assert len(pairs) == 54
    assert all(p.image.parent.parent == p.mask.parent.parent and p.image.stem == p.mask.stem for p in pairs)
    held_out = {Path(f).resolve() for pattern in cfg.prep.split.test for f in glob.glob(pattern)}
    assert {p.image.parent.parent.name for p in pairs if p.image.resolve() in held_out} == {"tile_5", "tile_6"}
    assert len(held_out) == 18 and cfg.prep.split.ratios[2] == 0  # tiles 1-4: train and val only
    assert {k.upper(): v for k, v in cfg.prep.palette.items()} == DUBAI_PALETTE
    assert cfg.train.time_limit == 30 and cfg.train.fit_schedule_to_time_limit
