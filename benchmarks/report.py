"""How long `ssmseg report` takes on a long history (figures printed, no asserts; the target is < 5 s).

    python benchmarks/report.py [--epochs 150] [--runs 1] [--workdir /tmp/ssmseg-report-bench]

Writes run folders with a format-2 history of the given length (a noisy saturating curve with warmup and
a cosine LR, five classes), then times `make_report` on them in this process, split into the import of
the report package (matplotlib, jinja2), analysis with the figures, and rendering; and the whole
`ssmseg report` command in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_run(folder: Path, epochs: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(1, epochs + 1, dtype=float)
    val = 0.8 - 0.5 * np.exp(-t / (epochs / 8)) + rng.normal(0, 0.004, epochs)
    train = val + 0.03 + rng.normal(0, 0.004, epochs)
    warm = 5
    lr = np.where(t <= warm, 1e-3 * t / warm, 1e-6 + 0.5 * 1e-3 * (1 + np.cos(math.pi * (t - warm) / (epochs - warm))))
    records = []
    for i in range(epochs):
        rec = {"epoch": i + 1, "lr": lr[i], "train/loss": 2 * (1 - train[i]), "val/loss": 2 * (1 - val[i])}
        for m, off in (("oa", 0.1), ("miou", 0.0), ("mean_f1", 0.05), ("kappa", -0.05)):
            rec[f"train/{m}"], rec[f"val/{m}"] = train[i] + off, val[i] + off
        rec.update(
            seconds=20.0,
            val_seconds=3.0,
            samples_per_s=500.0,
            grad_norm_mean=1.0,
            grad_norm_max=2.5,
            peak_memory_mb=900.0,
        )
        records.append(rec)
    b = int(np.argmax(val))
    hist = {
        "format_version": 2,
        "task": "segmentation",
        "monitor": "val/miou",
        "mode": "max",
        "metric_names": ["oa", "miou", "mean_f1", "kappa"],
        "best": {"value": val[b], "epoch": b + 1},
        "stop_reason": "completed",
        "run": {
            "model": "ssmu_net",
            "parameters": 1_234_567,
            "device": "cpu",
            "scan_backend": "cpu",
            "world_size": 1,
            "precision": "fp32",
            "dataset": "bench",
            "epochs_planned": epochs,
            "warmup_epochs": warm,
            "schedule": "cosine",
            "classes": list("abcde"),
            "class_counts_train": [5, 4, 3, 2, 1],
            "class_counts_val": [5, 4, 3, 2, 1],
        },
        "epochs": records,
    }
    folder.mkdir(parents=True)
    (folder / "history.json").write_text(json.dumps(hist))
    cfg = {"model": {"name": "ssmu_net"}, "optim": {"lr": 1e-3 * (seed + 1)}, "train": {"epochs": epochs}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--runs", type=int, default=1, help="runs given together (overlaid)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ssmseg-report-bench"))
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)  # the benchmark's own scratch folder
    runs = [write_run(args.workdir / f"run{k}", args.epochs, k) for k in range(args.runs)]

    t0 = time.perf_counter()
    import ssmseg.report.plots
    import ssmseg.report.render  # noqa: F401
    from ssmseg.report import make_report

    t1 = time.perf_counter()
    result = make_report(runs, out=args.workdir / "report")
    t2 = time.perf_counter()
    second = make_report(runs, out=args.workdir / "report_again")
    t3 = time.perf_counter()
    cmd = [sys.executable, "-m", "ssmseg", "report", *map(str, runs), "--out", str(args.workdir / "report_cli")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    t4 = time.perf_counter()
    figures = len(list((result.out / "plots").glob("*.png")))
    html_kb = (result.out / "report.html").stat().st_size / 1024
    print(f"{args.runs} run(s) x {args.epochs} epochs: {figures} figure(s), report.html {html_kb:.0f} KiB")
    print(f"  import report package (matplotlib, jinja2): {t1 - t0:6.2f} s")
    print(f"  make_report, first call:                    {t2 - t1:6.2f} s")
    print(f"  make_report, second call:                   {t3 - t2:6.2f} s  ({second.out.name})")
    print(
        f"  `ssmseg report` in a fresh process:         {t4 - t3:6.2f} s  "
        f"(exit {proc.returncode}; includes the CLI's own imports)"
    )
    print(f"  import + first report: {t2 - t0:.2f} s (target < 5 s)")


if __name__ == "__main__":
    main()
