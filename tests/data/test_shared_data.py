"""prep on the real datasets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from ssmseg.config import build_config
from ssmseg.data.check import check_sources
from ssmseg.data.prepare import prepare
from tests.data.helpers import write_tif

SALINAS_CLASSES = ["Brocoli_1", "Corn_senesced", "Lettuce_4wk", "Lettuce_5wk", "Lettuce_6wk", "Lettuce_7wk"]
DUBAI_PALETTE = {
    "#3C1098": "building",
    "#8429F6": "land",
    "#6EC1E4": "road",
    "#FEDD3A": "vegetation",
    "#E2A929": "water",
    "#9B9B9B": "unlabeled",
}


def test_salinas_a_with_remapped_classes(shared_data, tmp_path):
    root = shared_data / "hyperspectral" / "salinas_a"
    cfg = build_config(
        explicit={
            "data": {"crop_size": 16},
            "prep": {
                "images": [str(root / "SalinasA_corrected.mat")],
                "masks": [str(root / "SalinasA_gt.mat")],
                "pair_pattern": "^(SalinasA)_",
                "class_map": {1: 0, 10: 1, 11: 2, 12: 3, 13: 4, 14: 5},
                "classes": SALINAS_CLASSES,
                "ignore_values": [0],
                "split": {"block_size": 16, "folds": 3},
            },
        }
    )
    m = prepare(cfg, tmp_path / "salinas").manifest
    assert m["bands"] == 204 and m["classes"] == SALINAS_CLASSES
    totals = np.sum([m["class_counts"][s] for s in ("train", "val", "test")], axis=0)
    # Every labelled pixel of the scene (391+1343+616+1525+674+799) lands in at most one split.
    assert 0.8 * 5348 < totals.sum() <= 5348
    assert all(n > 0 for n in m["class_counts"]["train"])


def test_dubai_tiles_with_the_correct_palette(shared_data, tmp_path):
    root = shared_data / "aerial" / "dubai"
    tile = root / "tile_1"
    prep = {
        "images": [str(tile / "images" / "*.jpg")],
        "masks": [str(tile / "masks" / "*.png")],
        "palette": DUBAI_PALETTE,
        "ignore_colors": ["#000000"],
        "split": {"mode": "sources", "folds": 2},
    }
    cfg = build_config(explicit={"data": {"crop_size": 128}, "prep": prep})
    assert check_sources(cfg).problems == []
    m = prepare(cfg, tmp_path / "dubai").manifest
    assert m["classes"] == list(DUBAI_PALETTE.values()) and m["bands"] == 3


def test_dubai_classes_json_does_not_match_its_masks(shared_data):
    root = shared_data / "aerial" / "dubai"
    shipped = json.loads((root / "classes.json").read_text())["classes"]
    palette = {c["color"]: c["title"] for c in shipped}
    cfg = build_config(
        explicit={
            "data": {"crop_size": 128},
            "prep": {
                "images": [str(root / "tile_1" / "images" / "image_part_001.jpg")],
                "masks": [str(root / "tile_1" / "masks" / "image_part_001.png")],
                "palette": palette,
            },
        }
    )
    problems = check_sources(cfg).problems
    assert problems and "#8429F6" in problems[0] and "388530 px" in problems[0]


def test_rgb_byte_keeps_crs_and_transform(shared_data, tmp_path):
    src = shared_data / "geotiff" / "RGB.byte.tif"
    with rasterio.open(src) as ds:
        band = ds.read(1)
        crs, transform = ds.crs.to_string(), list(ds.transform)[:6]
    mask = write_tif(tmp_path / "mask" / "RGB.byte.tif", (band > 100).astype(np.uint8), crs=crs, transform=ds.transform)
    cfg = build_config(
        explicit={
            "data": {"crop_size": 64},
            "prep": {
                "images": [str(src)],
                "masks": [str(mask)],
                "classes": ["dark", "bright"],
                "split": {"block_size": 128},
            },
        }
    )
    m = prepare(cfg, tmp_path / "rgb").manifest
    assert m["sources"][0]["image"]["crs"] == crs == "EPSG:32618"
    p = m["patches"][5]
    r, c = p["window"][:2]
    a, b, x0, d, e, y0 = transform
    assert p["transform"] == pytest.approx([a, b, x0 + a * c, d, e, y0 + e * r])
    labels = np.load(tmp_path / "rgb" / "labels.npy", mmap_mode="r")
    valid = np.load(tmp_path / "rgb" / "valid.npy", mmap_mode="r")
    assert (labels[~valid.astype(bool)] == 255).all()  # the nodata=0 collar is ignored
    assert not valid.all()
