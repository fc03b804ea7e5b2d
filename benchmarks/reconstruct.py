"""Sparse-field reconstruction: training speed of each field model, and PSNR of a trained model against the
classical interpolators on the same fields and observed pixels (figures printed, no asserts).

    python benchmarks/reconstruct.py speed [--sizes 32,64] [--batch 16] [--steps 5] [--threads 2]
    python benchmarks/reconstruct.py quality --run RUN [--dataset DATASET] [--part val|test|all]
        [--fractions 0.05,0.1,0.2] [--fields 200] [--samples 4] [--solver euler] [--steps 1] [--threads 1]

quality: the run's training time and samples/s (history.json), then for each observed fraction, on a fixed
random subset of ``--fields`` fields of ``--part`` of the dataset (the run's own, or another one, e.g. held-out
scenes prepared apart): PSNR on unobserved pixels of one sample and of the mean of K samples (the run's
validation solver and steps unless given) beside mean fill, linear, cubic, thin-plate RBF and GP-Matern
(``tasks/reconstruction/baselines.py``), all on the same fields and observed pixels, and the gap of the mean
of K (and of one sample) to the best baseline. PSNR's MAX: the dataset's training range. Baselines are cached
under the temporary folder (they do not depend on the model). Choose settings on ``--part val``; report
held-out fields once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssmseg.config.schema import ModelConfig
from ssmseg.data.field_dataset import load_field_manifest
from ssmseg.data.fields import FieldStats, denormalize, normalize, observed_masks
from ssmseg.engine import checkpoint as ckpt
from ssmseg.models import build_model
from ssmseg.tasks.reconstruction import baselines as bl
from ssmseg.tasks.reconstruction.metrics import psnr
from ssmseg.tasks.reconstruction.sampling import draw_samples, load_field_model, sample_noise

SPEED = {
    "field_unet": {"width": 16, "depth": 2, "d_state": 8},
    "field_unet (scan-free)": {"width": 16, "depth": 2, "ss2d": False},
    "field_flow": {"width": 32, "depth": 2, "d_state": 8, "n_fourier": 32, "heads": 2},
    "field_flow (attention)": {
        "width": 32,
        "depth": 2,
        "d_state": 8,
        "n_fourier": 32,
        "heads": 2,
        "backbone": "attention",
    },
}


def speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(
        f"training samples/s (forward + backward + AdamW, batch {args.batch}, {args.threads} threads, "
        f"load {os.getloadavg()[0]:.1f})"
    )
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
                v = model(x, torch.rand(args.batch), x * mask, mask)  # field_unet: the velocity of its estimate
                (v.square().mean()).backward()
                opt.step()
                opt.zero_grad()
                if i >= 2:
                    times.append(time.perf_counter() - start)
            params = sum(p.numel() for p in model.parameters())
            rate = args.batch / np.median(times)
            print(f"  {label:24s} {size:3d}x{size:<3d} {params:>9,} params  {rate:7.1f} samples/s")


def _fields_of(folder: Path, part: str, n: int) -> tuple[np.ndarray, FieldStats, list[int]]:
    """Up to ``n`` fields (data units) of ``part`` (train/val/test/all) of a field dataset, a fixed random
    subset (seed 0) in index order, with the dataset's own training statistics (its PSNR MAX)."""
    manifest = load_field_manifest(folder)
    idx = [i for i, f in enumerate(manifest["fields"]) if part == "all" or f["split"] == part]
    if len(idx) > n:
        idx = sorted(np.random.default_rng(0).choice(idx, n, replace=False).tolist())
    fields = np.load(folder / "fields.npy", mmap_mode="r")[idx].astype(np.float32)
    return fields, FieldStats.from_dict(manifest["stats"]["train"]), idx


def _baselines(fields: np.ndarray, masks: np.ndarray, names: list[str], cache: Path) -> dict[str, np.ndarray]:
    """Each baseline's reconstructions (N, C, H, W), cached in ``cache`` (they do not depend on the model)."""
    if cache.is_file():
        with np.load(cache) as data:
            if all(k in data.files for k in names):
                return {k: data[k] for k in names}
    out = {k: np.stack([bl.predict(k, f, m) for f, m in zip(fields, masks, strict=True)]) for k in names}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _psnr_each(pred: np.ndarray, truth: np.ndarray, masks: np.ndarray, data_range: float) -> np.ndarray:
    """(N,) PSNR of each field on its unobserved pixels (``metrics.psnr``)."""
    p = torch.as_tensor(pred, dtype=torch.float64)
    t = torch.as_tensor(truth, dtype=torch.float64)
    return psnr(p, t, data_range, torch.as_tensor(masks)[:, None]).numpy()


def _psnr(pred: np.ndarray, truth: np.ndarray, masks: np.ndarray, data_range: float) -> float:
    """Mean over fields of PSNR on unobserved pixels."""
    return float(_psnr_each(pred, truth, masks, data_range).mean())


def quality(args: argparse.Namespace) -> None:
    """Model (one sample, mean of K) beside mean/linear/cubic/rbf/gp on the same fields and pixels."""
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    state = ckpt.load(run / "checkpoints" / "best.pt")
    model, stats = load_field_model(state, torch.device("cpu"))
    rc = state["config"]["reconstruction"]
    solver, steps = args.solver or rc["val_solver"], args.steps or rc["val_steps"]
    folder = Path(args.dataset or state["dataset"])
    fields, own, idx = _fields_of(folder, args.part, args.fields)
    history = json.loads((run / "history.json").read_text())
    epochs = history["epochs"]
    seconds = sum(e.get("seconds", 0.0) + e.get("val_seconds", 0.0) for e in epochs)
    rate = np.median([e["samples_per_s"] for e in epochs if e.get("samples_per_s")] or [float("nan")])
    print(
        f"run {run}: {state['config']['model']['name']}, {len(epochs)} epochs in {seconds / 60:.1f} min "
        f"({rate:.0f} training samples/s); fields: {len(fields)} of {folder} ({args.part}); PSNR MAX "
        f"{own.data_range:g} (the dataset's training range); {solver} {steps} steps, K = {args.samples}; "
        f"load {os.getloadavg()[0]:.1f}"
    )
    names = ["mean", "linear", "cubic", "rbf", "gp"]
    head = f"{'observed':>8s} {'1 sample':>9s} {'mean K':>8s} " + " ".join(f"{n:>7s}" for n in names)
    print(head + f" {'gap to best':>12s}")
    n, _, h, w = fields.shape
    for frac in (float(f) for f in args.fractions.split(",")):
        masks = np.stack([observed_masks(1, h, w, frac, args.seed, first_index=i)[0] for i in idx])
        key = f"{folder.resolve()}|{args.part}|{len(idx)}|{frac}|{args.seed}"
        cache = Path(tempfile.gettempdir()) / "ssmseg-bench" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
        base = _baselines(fields, masks, names, cache)
        scores = {k: _psnr(v, fields, masks, own.data_range) for k, v in base.items()}
        values = normalize(torch.from_numpy(fields), stats).float()
        observed = torch.from_numpy(masks)[:, None]
        noise = sample_noise(torch.tensor(idx), args.samples, tuple(fields.shape[1:]), args.seed)
        draws = []
        with torch.no_grad():
            for b in range(0, n, 64):
                part, _ = draw_samples(
                    model, values[b : b + 64], observed[b : b + 64], noise[:, b : b + 64], solver, steps
                )
                draws.append(denormalize(part, stats))
        draws = torch.cat(draws, 1).double().numpy()
        one = np.mean([_psnr(d, fields, masks, own.data_range) for d in draws])
        mean_k = _psnr(draws.mean(0), fields, masks, own.data_range)
        best = max(names, key=lambda k: scores[k])
        diff = _psnr_each(draws.mean(0), fields, masks, own.data_range) - _psnr_each(
            base[best], fields, masks, own.data_range
        )  # paired per field: its standard error says how far the gap can be trusted
        row = f"{frac:8.0%} {one:9.2f} {mean_k:8.2f} " + " ".join(f"{scores[k]:7.2f}" for k in names)
        print(
            row + f" {mean_k - scores[best]:+7.2f} +- {diff.std(ddof=1) / np.sqrt(len(diff)):.2f} ({best}; "
            f"1 sample {one - scores[best]:+.2f})"
        )


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
    q.add_argument("--dataset", default=None, help="field dataset (default: the run's)")
    q.add_argument("--part", default="val", choices=["train", "val", "test", "all"])
    q.add_argument("--fractions", default="0.05,0.1,0.2")
    q.add_argument("--fields", type=int, default=200)
    q.add_argument("--samples", type=int, default=4)
    q.add_argument("--solver", default=None, help="default: the run's reconstruction.val_solver")
    q.add_argument("--steps", type=int, default=None, help="default: the run's reconstruction.val_steps")
    q.add_argument("--seed", type=int, default=12345, help="observed pixels and noise (not the run's val seed)")
    q.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    speed(args) if args.what == "speed" else quality(args)


if __name__ == "__main__":
    main()
