"""Classical baselines for sparse-field reconstruction: PSNR on unobserved pixels and seconds per field
(figures printed, no asserts). These are the bars a learned model must beat.

    python benchmarks/baselines.py [--n 50] [--size 32] [--fractions 0.05,0.1,0.2] [--gp-fields 50]
                                   [--data ../shared/data/fields] [--seed 0]

Two field sets, each field scaled to [0, 1] on its own (so PSNR's MAX is 1):
- sinusoid: ``sinusoid_fields(n, size)`` (4 terms, at most 4 cycles across the field);
- real: non-overlapping size x size tiles of every single-band image under --data (the scikit-image
  grayscale photos), constant tiles dropped, n of them drawn at random (fixed seed).
Masks come from ``observed_masks`` (fixed per field and seed): every baseline sees the same pixels.
PSNR is the mean over fields of per-field PSNR (± its standard error); seconds per field are the median
over fields (the machine may be shared: the median ignores the odd preempted call). The GP, by far the
slowest, can be limited to the first --gp-fields fields; its PSNR is then shown beside linear's on those.
Run with OMP_NUM_THREADS=1 for per-field timings on one core (the GP's small solves gain nothing from
threads, and on a shared machine they lose much).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ssmseg.data.fields import observed_masks, read_fields, scale_to_unit, sinusoid_fields
from ssmseg.data.io import open_source
from ssmseg.tasks.reconstruction.baselines import BASELINES, predict
from ssmseg.tasks.reconstruction.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def real_fields(folder: Path, n: int, size: int, seed: int) -> tuple[np.ndarray, list[str]]:
    paths = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            with open_source(p) as src:
                if src.info.bands == 1 and min(src.info.height, src.info.width) >= size:
                    paths.append(p)
    fields, _ = scale_to_unit(read_fields(paths, size=size), drop_constant=True)
    pick = np.sort(np.random.default_rng(seed).choice(len(fields), min(n, len(fields)), replace=False))
    return fields[pick], [p.name for p in paths]


def run(name: str, fields: np.ndarray, fractions: list[float], seed: int, gp_fields: int) -> None:
    n, _, h, w = fields.shape
    print(f"\n{name}: {n} fields {h}x{w}; PSNR (dB) on unobserved pixels, mean ± s.e.; median s/field")
    print(f"{'baseline':<10}" + "".join(f"{f'{f:.0%} observed':>26}" for f in fractions))
    target = torch.from_numpy(fields).double()
    results: dict[str, list[str]] = {b: [] for b in BASELINES}
    gp_linear: list[str] = []
    for frac in fractions:
        masks = observed_masks(n, h, w, frac, seed=seed)
        for b in BASELINES:
            count = min(n, gp_fields) if b == "gp" else n
            preds, seconds = [], []
            for i in range(count):
                t0 = time.perf_counter()
                preds.append(predict(b, fields[i], masks[i]))
                seconds.append(time.perf_counter() - t0)
            obs = torch.from_numpy(masks[:count, None])
            p = psnr(torch.from_numpy(np.stack(preds)), target[:count], 1.0, obs).numpy()
            se = p.std(ddof=1) / np.sqrt(count)
            results[b].append(f"{p.mean():6.2f} ± {se:4.2f} {np.median(seconds):8.4f}s")
            if b == "gp" and count < n:
                lin = np.stack([predict("linear", fields[i], masks[i]) for i in range(count)])
                pl = psnr(torch.from_numpy(lin), target[:count], 1.0, obs).numpy()
                gp_linear.append(f"{pl.mean():6.2f} ± {pl.std(ddof=1) / np.sqrt(count):4.2f}")
    for b in BASELINES:
        label = f"gp[{min(n, gp_fields)}]" if b == "gp" and gp_fields < n else b
        print(f"{label:<10}" + "".join(f"{r:>26}" for r in results[b]))
    if gp_linear:
        print(f"{'linear[gp]':<10}" + "".join(f"{r:>26}" for r in gp_linear) + "   (linear on the GP's fields)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--fractions", default="0.05,0.1,0.2")
    ap.add_argument("--gp-fields", type=int, default=50)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fields")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    warm = sinusoid_fields(1, 16, seed=99)[0]
    for b in BASELINES:  # imports outside the timings
        predict(b, warm, observed_masks(1, 16, 16, 0.2, seed=99)[0])
    run("sinusoid", sinusoid_fields(args.n, args.size, seed=args.seed), fractions, args.seed, args.gp_fields)
    if args.data.is_dir():
        fields, names = real_fields(args.data, args.n, args.size, args.seed)
        run(f"real ({', '.join(names)})", fields, fractions, args.seed, args.gp_fields)
    else:
        print(f"\nreal fields skipped: {args.data} not found")


if __name__ == "__main__":
    main()
