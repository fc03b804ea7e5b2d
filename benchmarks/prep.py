"""prep throughput and peak memory on generated uint16 GeoTIFFs (figures printed, no asserts).

    python benchmarks/prep.py [--sizes 2500,10000] [--bands 4] [--crop 64] [--workdir /tmp/ssmseg-bench]

For each size: writes an S x S x bands uint16 scene (and a mask) window by window, then runs `prepare` in
a fresh process and prints wall time, MB/s of source image data, and that process's peak resident memory
(VmHWM). It then reads random patches back the way `train` does and prints patches per second.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_scene(folder: Path, size: int, bands: int) -> tuple[Path, Path]:
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    image, mask = folder / "img" / f"s{size}.tif", folder / "msk" / f"s{size}.tif"
    if image.exists() and mask.exists():
        return image, mask
    image.parent.mkdir(parents=True, exist_ok=True)
    mask.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "crs": "EPSG:32633",
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "transform": from_origin(500000, 4500000, 10, 10),
    }
    rng = np.random.default_rng(0)
    with (
        rasterio.open(image, "w", count=bands, dtype="uint16", **profile) as img,
        rasterio.open(mask, "w", count=1, dtype="uint8", **profile) as msk,
    ):
        for r in range(0, size, 1024):
            h = min(1024, size - r)
            rows = np.arange(r, r + h)[:, None] // 300 + np.arange(size)[None, :] // 300
            labels = (rows % 4).astype(np.uint8)
            data = (labels[None].astype(np.uint16) * 1000 + rng.integers(0, 500, (bands, h, size))).astype(np.uint16)
            img.write(data, window=Window(0, r, size, h))
            msk.write(labels[None], window=Window(0, r, size, h))
    return image, mask


def child(image: str, mask: str, out: str, crop: int) -> None:
    from ssmseg.config import build_config
    from ssmseg.data.prepare import prepare

    cfg = build_config(
        explicit={
            "data": {"crop_size": crop},
            "prep": {"images": [image], "masks": [mask], "classes": ["a", "b", "c", "d"]},
        }
    )
    start = time.perf_counter()
    result = prepare(cfg, Path(out), force=True)
    seconds = time.perf_counter() - start
    hwm = next(
        int(ln.split()[1]) for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM")
    )
    print(f"{seconds} {hwm * 1024} {len(result.manifest['patches'])}")


def read_speed(folder: Path, batch: int = 16, seconds: float = 3.0) -> float:
    """Random patches per second, loaded and normalised as train does."""
    from ssmseg.data.datasets import PatchDataset

    ds = PatchDataset(folder, split="train")
    rng = np.random.default_rng(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in rng.integers(0, len(ds), batch):
            ds[int(i)]
        n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2500,10000")
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ssmseg-bench"))
    args = parser.parse_args()
    head = ("size", "source MB", "patches", "seconds", "MB/s", "peak RSS MB", "read patches/s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (7, 10, 8, 8, 7, 12, 15), strict=True)))
    for size in (int(s) for s in args.sizes.split(",")):
        image, mask = write_scene(args.workdir, size, args.bands)
        out = args.workdir / f"ds{size}"
        shutil.rmtree(out, ignore_errors=True)
        code = (
            f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); "
            f"import benchmarks.prep as b; b.child({str(image)!r}, {str(mask)!r}, {str(out)!r}, {args.crop})"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-2000:])
            continue
        seconds, peak, patches = proc.stdout.split()
        mb = size * size * args.bands * 2 / 1e6
        speed = read_speed(out)
        print(
            f"{size:>7} {mb:10.0f} {patches:>8} {float(seconds):8.1f} {mb / float(seconds):7.1f} "
            f"{int(peak) / 1e6:12.0f} {speed:15.0f}"
        )


if __name__ == "__main__":
    main()
