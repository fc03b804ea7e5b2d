"""Sparse-field reconstruction: training speed of each field model, and PSNR of a trained model against the
classical interpolators on the same fields and observed pixels (figures printed, no asserts).

    python benchmarks/reconstruct.py speed [--sizes 32,64] [--batch 16] [--steps 5] [--threads 2]
    python benchmarks/reconstruct.py quality --run RUN [--fractions 0.05,0.1,0.2] [--fields 50] [--samples 4]
        [--shared ../shared/data/fields] [--threads 1]

quality: for each observed fraction, ``ssmseg sweep-steps`` (Euler 1 and 8 steps) of the run on (a) the
test split of its own dataset and (b) 32 x 32 tiles cut from the real grayscale images in --shared, each
tile scaled to [0, 1] (the range of the built-in sinusoid fields); the baselines (linear, cubic, thin-plate
RBF, a Matern GP fitted per field) see the same fields and pixels. Printed: the model's best PSNR (one
sample and mean of K) on unobserved pixels, the best baseline and the gap. The goal we hold ourselves to:
the model beats the best classical method at 10% observed on each set.
"""

from __future__ import annotations

import argparse
import glob
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssmseg.config import build_config
from ssmseg.config.schema import ModelConfig
from ssmseg.data.fields import read_image, scale_to_unit
from ssmseg.data.prepare_fields import prepare_fields
from ssmseg.experiments.sweep import sweep_steps
from ssmseg.models import build_model

SPEED = {"field_unet": {"width": 16, "depth": 2, "d_state": 8},
         "field_flow": {"width": 32, "depth": 2, "d_state": 8, "n_fourier": 32, "heads": 2},
         "field_flow (attention)": {"width": 32, "depth": 2, "d_state": 8, "n_fourier": 32, "heads": 2,
                                    "backbone": "attention"}}  # fmt: skip


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"training samples/s (forward + backward + AdamW, batch {args.batch}, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f})")  # fmt: skip
    for label, kw in SPEED.items():
        name = label.split()[0]
        model = build_model(ModelConfig(name=name, **kw), 1, 0)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        for size in (int(s) for s in args.sizes.split(",")):
            x = torch.randn(args.batch, 1, size, size)
            mask = (torch.rand(args.batch, 1, size, size) < 0.1).float()
            times = []
            for i in range(args.steps + 2):
                start = time.perf_counter()
                v = model(x, torch.rand(args.batch), x * mask, mask)
                (v.square().mean()).backward()
                opt.step()
                opt.zero_grad()
                if i >= 2:
                    times.append(time.perf_counter() - start)
            params = sum(p.numel() for p in model.parameters())
            rate = args.batch / np.median(times)
            print(f"  {label:24s} {size:3d}x{size:<3d} {params:>9,} params  {rate:7.1f} samples/s")


def real_tiles(shared: Path, out: Path) -> Path:
    """32 x 32 tiles of the grayscale images, each scaled to [0, 1], as a field dataset (all in the test split
    is not possible: prep needs every split, so the sweep reads its test split)."""
    tiles = []
    for path in sorted(glob.glob(str(shared / "skimage" / "*"))):
        try:
            image = read_image(path, "channels")
        except Exception:  # a file the readers do not take (the benchmark states what it read)
            continue
        if image.shape[1] != 1 or min(image.shape[2:]) < 64:
            continue
        h, w = image.shape[2] // 32 * 32, image.shape[3] // 32 * 32
        t = image[0, 0, :h, :w].reshape(h // 32, 32, w // 32, 32).transpose(0, 2, 1, 3).reshape(-1, 1, 32, 32)
        tiles.append(t[:: max(1, len(t) // 40)])
    fields, _ = scale_to_unit(np.concatenate(tiles), drop_constant=True)
    np.save(out / "tiles.npy", fields)
    cfg = build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"images": [str(out / "tiles.npy")],
                                 "split": {"mode": "random", "ratios": [0.2, 0.2, 0.6]}}})  # fmt: skip
    return prepare_fields(cfg, out / "real").out


def quality(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ssmseg-reconstruct-"))
    sets = {"own test fields": None, "real image tiles": real_tiles(Path(args.shared), tmp)}
    print(f"{'fields':18s} {'observed':>8s} {'model 1':>8s} {'mean K':>8s} {'best baseline':>22s} {'gap':>7s}")
    for name, fields in sets.items():
        for frac in (float(f) for f in args.fractions.split(",")):
            cfg = build_config(explicit={"task": {"name": "reconstruction"}, "sweep": {
                "solvers": ["euler"], "steps": [1, 8], "max_fields": args.fields, "samples": args.samples,
                "observed": frac, "baselines": ["linear", "cubic", "rbf", "gp"],
                # the dopri5 reference only measures solver error here: a loose one keeps the benchmark short
                "reference_atol": 1e-3, "reference_rtol": 1e-3},
                "runtime": {"threads": args.threads}})  # fmt: skip
            r = sweep_steps(cfg, Path(args.run), fields, tmp / f"sweep-{len(list(tmp.iterdir()))}")
            one = max(row["psnr_sample"] for row in r.rows)
            mean = max(row["psnr_mean"] for row in r.rows)
            best = max(r.baselines, key=lambda b: b["psnr"])
            shown = f"{best['name']} {best['psnr']:.2f}"
            print(f"{name:18s} {frac:8.0%} {one:8.2f} {mean:8.2f} {shown:>22s} {max(one, mean) - best['psnr']:+7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--sizes", default="32,64")
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--threads", type=int, default=2)
    q = sub.add_parser("quality")
    q.add_argument("--run", required=True)
    q.add_argument("--fractions", default="0.05,0.1,0.2")
    q.add_argument("--fields", type=int, default=50)
    q.add_argument("--samples", type=int, default=4)
    q.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fields"))
    q.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    speed(args) if args.what == "speed" else quality(args)


if __name__ == "__main__":
    main()
