"""Whole-scene inference speed and memory (figures printed, no asserts).

    python benchmarks/infer.py [--sizes 2048,4096,8192] [--bands 4] [--workdir /tmp/ssmseg-infer]

Builds the fast preset's model for a 4-band input (random weights: speed does not depend on them), writes
a uint16 GeoTIFF per size window by window, and runs `evaluate` on it in a fresh process: megapixels per
second, and that process's peak resident memory (VmHWM), which should not grow with the scene's height
and only slowly with its width.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(folder: Path, bands: int) -> Path:
    import yaml

    from ssmseg.config import build_config, dump_config
    from ssmseg.engine import checkpoint as ckpt
    from ssmseg.models import build_model

    path = folder / "run" / "checkpoints" / "best.pt"
    if path.is_file():
        return path
    cfg = build_config(preset="fast")
    model = build_model(cfg.model, bands, 5)
    ckpt.save(
        {
            "config": yaml.safe_load(dump_config(cfg)),
            "model": model.state_dict(),
            "in_channels": bands,
            "num_classes": 5,
            "classes": [f"c{i}" for i in range(5)],
            "ignore_index": 255,
            "palette": ["#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD"],
            "labels": {"kind": "index", "values": {str(i): i for i in range(5)}, "ignored": []},
            "normalization": {"offset": [1000.0] * bands, "scale": [500.0] * bands, "method": "zscore"},
            "dataset": "",
            "fold": None,
            "nodata": None,
        },
        path,
    )
    return path


def make_scene(folder: Path, size: int, bands: int) -> Path:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    path = folder / f"scene{size}.tif"
    if path.is_file():
        return path
    profile = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "count": bands,
        "dtype": "uint16",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 4500000, 10, 10),
    }
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size, 1024):
            h = min(1024, size - r)
            dst.write(rng.integers(0, 2000, (bands, h, size)).astype(np.uint16), window=Window(0, r, size, h))
    return path


def child(checkpoint: str, scene: str, out: str) -> None:
    import torch

    from ssmseg.config import build_config
    from ssmseg.experiments.evaluate import evaluate

    torch.set_num_threads(2)
    cfg = build_config(preset="fast", explicit={"runtime": {"device": "cpu"}})
    start = time.perf_counter()
    evaluate(cfg, Path(checkpoint), Path(out), [Path(scene)], [], None)
    seconds = time.perf_counter() - start
    hwm = next(
        int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM")
    )
    print(f"{seconds} {hwm * 1024}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,4096,8192")
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ssmseg-infer"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = make_checkpoint(args.workdir, args.bands)
    print(f"{'size':>6} {'megapixels':>10} {'seconds':>8} {'MP/s':>6} {'peak RSS MB':>12}")
    for size in (int(s) for s in args.sizes.split(",")):
        scene = make_scene(args.workdir, size, args.bands)
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); import benchmarks.infer as b; "
            f"b.child({str(checkpoint)!r}, {str(scene)!r}, {str(args.workdir / f'out{size}')!r})"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:])
            continue
        seconds, peak = proc.stdout.split()
        mp = size * size / 1e6
        print(f"{size:>6} {mp:10.1f} {float(seconds):8.1f} {mp / float(seconds):6.2f} {int(peak) / 1e6:12.0f}")


if __name__ == "__main__":
    main()
