"""Held-out accuracy against the classical floor, per dataset and model (figures printed, no asserts).

    python benchmarks/accuracy.py [--quick] [--data ../shared/data] [--threads 1] [--out DIR]

Hyperspectral protocol: Salinas-A (``presets/salinas_a.yaml``) prepared with its 3-fold spatial block split,
then ``ssmseg cv --preset hyperspectral --folds 3`` for ssmu_net and for a unet of the same budget (same
epochs, optimiser, loss and augmentation), with ``cv.baselines`` fitting logistic regression and a random
forest on each fold's training part and scoring them on exactly the pixels the network is scored on. Each
command runs in a fresh process (its peak resident memory is read from /proc). Printed per model: training
wall time per fold (epochs, validation included), mean training samples/s, peak memory, held-out OA and
mIoU per fold, per-class IoU (mean over folds), the baselines' held-out mIoU on the same pixels and the gap
to logistic regression (the gate: at or above it in every fold).

Aerial protocol (Dubai tiles 1-4 train, 5-6 held out): run only when ``presets/aerial.yaml`` exists.

``--quick`` trains 30 epochs instead of the preset's count (about 10 minutes on 2 idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEAK = "import atexit, pathlib; atexit.register(lambda: print('VmHWM', next(l.split()[1] for l in \
pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM'))))"
UNET_RESET = [
    "model.name=unet",
    "model.d_state=16",
    "model.n_filters=16",
    "model.linear_epochs=0",
    "model.spectral_train=true",
]


def ssmseg(args: list[str], cwd: Path, threads: int) -> tuple[float, float]:
    """Run one ssmseg command in a fresh process: (wall seconds, peak resident MB)."""
    code = f"{PEAK}; import sys; sys.argv = ['ssmseg', *{args!r}]; from ssmseg.cli.app import main; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"ssmseg {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    peak = next((int(ln.split()[1]) for ln in proc.stdout.splitlines() if ln.startswith("VmHWM")), 0)
    return wall, peak / 1024


def fold_rows(cv_dir: Path) -> list[dict]:
    """Per fold: training seconds, samples/s, held-out metrics and the baselines on the same pixels."""
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    rows = []
    for fold in summary["folds"]:
        epochs = json.loads((cv_dir / f"fold_{fold['fold']}" / "history.json").read_text())["epochs"]
        methods = fold.get("baselines", {}).get("methods", {})
        rows.append({
            "fold": fold["fold"], "best_epoch": fold["best_epoch"],
            "train_s": sum(e["seconds"] + e.get("val_seconds", 0.0) for e in epochs),
            "samples_s": sum(e["samples_per_s"] for e in epochs) / len(epochs),
            "peak_mb": max(e.get("peak_memory_mb", 0.0) for e in epochs),
            "oa": fold["heldout/oa"], "miou": fold["heldout/miou"], "per_class": fold["per_class_iou"],
            "baselines": {m: (v["oa"], v["miou"]) for m, v in methods.items()},
        })  # fmt: skip
    return rows


def show(dataset: str, model: str, rows: list[dict], wall: float, peak: float) -> None:
    print(f"\n{dataset} / {model}: cv wall {wall:.0f} s (prep excluded), peak RSS {peak:.0f} MB")
    print(f"{'fold':>4} {'epoch':>5} {'train s':>8} {'samp/s':>7} {'OA':>6} {'mIoU':>6} {'logit':>6} {'forest':>6} "
          f"{'gap':>7}")  # fmt: skip
    for r in rows:
        logit = r["baselines"].get("logistic", (float("nan"),) * 2)[1]
        forest = r["baselines"].get("random_forest", (float("nan"),) * 2)[1]
        print(f"{r['fold']:>4} {r['best_epoch']:>5} {r['train_s']:8.1f} {r['samples_s']:7.1f} {r['oa']:6.3f} "
              f"{r['miou']:6.3f} {logit:6.3f} {forest:6.3f} {r['miou'] - logit:+7.3f}")  # fmt: skip
    classes = rows[0]["per_class"]
    mean_iou = {c: sum((r["per_class"][c] or 0.0) for r in rows) / len(rows) for c in classes}
    print("  per-class IoU (mean over folds): " + ", ".join(f"{c} {v:.3f}" for c, v in mean_iou.items()))
    gaps = [r["miou"] - r["baselines"].get("logistic", (0, 0))[1] for r in rows]
    below = [str(r["fold"]) for r, g in zip(rows, gaps, strict=True) if g < 0]
    verdict = "at or above logistic regression in every fold"
    if below:
        verdict = f"BELOW logistic regression in fold(s) {', '.join(below)}"
    print(f"  {verdict} (smallest gap {min(gaps):+.4f}); mean mIoU {sum(r['miou'] for r in rows) / len(rows):.4f}")


def hyperspectral(args: argparse.Namespace, work: Path) -> dict[str, list[dict]]:
    source = Path(args.data).resolve() / "hyperspectral" / "salinas_a"
    if not source.is_dir():
        print(f"hyperspectral: skipped, no Salinas-A at {source}")
        return {}
    dataset = work / "salinas_a"
    ssmseg(["prep", "--preset", "salinas_a", "--out", str(dataset)], source, args.threads)
    common = ["--folds", "3", "--set", f"data.dataset={dataset}", "--set", f"runtime.out_dir={work / 'runs'}",
              "--set", f"runtime.threads={args.threads}", "--set", "cv.baselines=true"]  # fmt: skip
    if args.quick:
        common += ["--set", "train.epochs=30"]
    results = {}
    for model, extra in (("ssmu_net", []), ("unet", UNET_RESET)):
        sets = [a for kv in extra for a in ("--set", kv)]
        wall, peak = ssmseg(["cv", "--preset", "hyperspectral", *common, *sets, "--set", f"runtime.name={model}"],
                            ROOT, args.threads)  # fmt: skip
        rows = fold_rows(work / "runs" / model)
        show("Salinas-A (3-fold block cv)", model, rows, wall, peak)
        results[model] = rows
    a, b = (sum(r["miou"] for r in results[m]) / 3 for m in ("ssmu_net", "unet"))
    print(f"\nssmu_net - unet (same budget), mean held-out mIoU: {a - b:+.4f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 epochs per fold instead of the preset's")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1 on a shared machine)")
    parser.add_argument("--out", default=None, help="keep the datasets and runs here (default: a temporary folder)")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?"
    print(f"benchmarks/accuracy.py{' --quick' if args.quick else ''}: {args.threads} thread(s), load {load}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out).resolve() if args.out else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        hyperspectral(args, work)
        if (ROOT / "presets" / "aerial.yaml").exists():
            print("\naerial: presets/aerial.yaml exists, but this script does not run its protocol yet")
        else:
            print("\naerial (Dubai tiles 1-4 / 5-6): not run, presets/aerial.yaml is not built")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?"
    print(f"load at the end {load}")


if __name__ == "__main__":
    main()
