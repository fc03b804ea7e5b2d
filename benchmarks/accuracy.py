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

Aerial protocol (``presets/aerial.yaml``): the Dubai tiles prepared once, tiles 1-4 split into train/val by
spatial blocks and tiles 5-6 whole as the test split (held-out scenes); unet and cmt_unet each trained with
the preset (``train.time_limit`` minutes, the schedule fitted to it), then ``ssmseg eval RUN --set
eval.baselines=true``: the model and the baselines (fitted on the training split of tiles 1-4) on exactly the
same test pixels, each labelled pixel once. Printed per model: training wall time and epochs, samples/s, peak
memory, held-out OA/mIoU, per-class IoU, the baselines on the same pixels and the gap to the random forest
(the gate: at or above it).

``--quick`` trains 30 epochs instead of the preset's count for the cubes and 3 minutes instead of the preset's
time limit for the aerial models (a smoke run of the protocol, not its result).
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


def sets(*pairs: str) -> list[str]:
    """``--set`` before each ``key=value``."""
    return [a for kv in pairs for a in ("--set", kv)]


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
        rows.append(
            {
                "fold": fold["fold"],
                "best_epoch": fold["best_epoch"],
                "train_s": sum(e["seconds"] + e.get("val_seconds", 0.0) for e in epochs),
                "samples_s": sum(e["samples_per_s"] for e in epochs) / len(epochs),
                "peak_mb": max(e.get("peak_memory_mb", 0.0) for e in epochs),
                "oa": fold["heldout/oa"],
                "miou": fold["heldout/miou"],
                "per_class": fold["per_class_iou"],
                "baselines": {m: (v["oa"], v["miou"]) for m, v in methods.items()},
            }
        )
    return rows


def show(dataset: str, model: str, rows: list[dict], wall: float, peak: float) -> None:
    print(f"\n{dataset} / {model}: cv wall {wall:.0f} s (prep excluded), peak RSS {peak:.0f} MB")
    print(
        f"{'fold':>4} {'epoch':>5} {'train s':>8} {'samp/s':>7} {'OA':>6} {'mIoU':>6} {'logit':>6} {'forest':>6} "
        f"{'gap':>7}"
    )
    for r in rows:
        logit = r["baselines"].get("logistic", (float("nan"),) * 2)[1]
        forest = r["baselines"].get("random_forest", (float("nan"),) * 2)[1]
        print(
            f"{r['fold']:>4} {r['best_epoch']:>5} {r['train_s']:8.1f} {r['samples_s']:7.1f} {r['oa']:6.3f} "
            f"{r['miou']:6.3f} {logit:6.3f} {forest:6.3f} {r['miou'] - logit:+7.3f}"
        )
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
    runs = f"runtime.out_dir={work / 'runs'}"
    quick = ["train.epochs=30"] if args.quick else []
    common = [
        "--folds",
        "3",
        *sets(f"data.dataset={dataset}", runs, f"runtime.threads={args.threads}", "cv.baselines=true", *quick),
    ]
    results = {}
    for model, extra in (("ssmu_net", []), ("unet", UNET_RESET)):
        wall, peak = ssmseg(
            ["cv", "--preset", "hyperspectral", *common, *sets(*extra, f"runtime.name={model}")], ROOT, args.threads
        )
        rows = fold_rows(work / "runs" / model)
        show("Salinas-A (3-fold block cv)", model, rows, wall, peak)
        results[model] = rows
    a, b = (sum(r["miou"] for r in results[m]) / 3 for m in ("ssmu_net", "unet"))
    print(f"\nssmu_net - unet (same budget), mean held-out mIoU: {a - b:+.4f}")
    return results


def aerial(args: argparse.Namespace, work: Path) -> dict[str, dict]:
    """Dubai tiles 1-4 (train/val) -> tiles 5-6 (held-out test split), unet and cmt_unet, baselines on the same
    pixels."""
    source = Path(args.data).resolve() / "aerial" / "dubai"
    if not source.is_dir():
        print(f"\naerial: skipped, no Dubai tiles at {source}")
        return {}
    dataset = work / "dubai"
    # the preset names its tiles relative to the Dubai folder: prep runs there, as its header says
    wall, _ = ssmseg(["prep", "--preset", "aerial", "--out", str(dataset)], source, args.threads)
    print(f"\naerial: Dubai tiles 1-4 train/val, 5-6 held out (prep {wall:.0f} s)")
    common = sets(f"data.dataset={dataset}", f"runtime.out_dir={work / 'runs'}", f"runtime.threads={args.threads}")
    common += sets(*(["train.time_limit=3"] if args.quick else []))
    results, baselines = {}, None
    for model in ("unet", "cmt_unet"):
        run = work / "runs" / f"aerial_{model}"
        load0 = Path("/proc/loadavg").read_text().split()[0]
        wall, peak = ssmseg(
            ["train", "--preset", "aerial", *common, *sets(f"model.name={model}", f"runtime.name=aerial_{model}")],
            ROOT,
            args.threads,
        )
        load1 = Path("/proc/loadavg").read_text().split()[0]
        out = work / "eval" / model
        fit = [] if baselines else ["eval.baselines=true"]  # fitted once: the same pixels for both models
        ewall, _ = ssmseg(
            ["eval", str(run), "--out", str(out), *sets(*fit, f"runtime.threads={args.threads}")], ROOT, args.threads
        )
        results[model] = show_aerial(model, run, out, wall, peak, ewall, f"{load0} -> {load1}", baselines)
        baselines = baselines or results[model]["baselines"]
    return results


def show_aerial(
    model: str, run: Path, out: Path, wall: float, peak: float, eval_wall: float, load: str, fitted: dict | None
) -> dict:
    """One model's aerial figures; ``fitted``: the baselines another model's eval fitted on the same test pixels."""
    history = json.loads((run / "history.json").read_text())
    epochs = history["epochs"]
    m = json.loads((out / "metrics.json").read_text())
    train_s = sum(e["seconds"] + e.get("val_seconds", 0.0) for e in epochs)
    methods = m.get("baselines", {}).get("methods") or fitted or {}
    best = (history.get("best") or {}).get("epoch")
    print(
        f"\naerial / {model}: training {train_s / 60:.1f} min ({len(epochs)} epochs, best {best}, "
        f"{history.get('stop_reason')}), command wall {wall:.0f} s, load {load}, peak RSS {peak:.0f} MB, "
        f"{sum(e['samples_per_s'] for e in epochs) / len(epochs):.1f} samples/s; eval "
        f"{eval_wall:.0f} s"
    )
    rows = [(model, m["oa"], m["miou"]), *((k, v["oa"], v["miou"]) for k, v in methods.items())]
    pixels = sum(map(sum, m["confusion_matrix"]))
    print(f"  {'method':<14} {'OA':>6} {'mIoU':>6}   (tiles 5-6, {pixels} labelled pixels, each once)")
    for name, oa, miou in rows:
        print(f"  {name:<14} {oa:6.3f} {miou:6.3f}")
    print("  per-class IoU: " + ", ".join(f"{c} {v['iou']:.3f}" for c, v in m["per_class"].items()))
    forest = methods.get("random_forest", {}).get("miou")
    if forest is not None:
        gap = m["miou"] - forest
        print(f"  {'at or above' if gap >= 0 else 'BELOW'} the random forest on the same pixels (gap {gap:+.4f})")
    return {"oa": m["oa"], "miou": m["miou"], "baselines": methods, "train_s": train_s, "epochs": len(epochs)}


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
        aerial(args, work)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else "?"
    print(f"load at the end {load}")


if __name__ == "__main__":
    main()
