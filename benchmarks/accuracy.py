"""Held-out accuracy against the classical floor, per dataset and model (figures printed, no asserts).

    python benchmarks/accuracy.py [--quick] [--data ../shared/data] [--threads 1] [--out DIR]

Sized for 2 idle CPU cores: the two models of each protocol run side by side, one process each with
``--threads`` torch threads (1 by default), so the full run takes about one aerial time limit plus the hyperspectral
cv, prep and the evals: an estimate is printed at the start (from the presets' time limits and earlier
measurements) and the total wall time at the end. Each command runs in a fresh process (its peak resident memory
is read from /proc) with its output in ``OUT/logs/``. On a loaded machine both processes share what is left: the
time limits still hold, but each model gets fewer epochs.

Hyperspectral protocol: Salinas-A (``presets/salinas_a.yaml``) prepared with its 3-fold spatial block split,
then ``ssmseg cv --preset hyperspectral --folds 3`` for ssmu_net and, side by side, for a unet of the same budget
(same epochs, optimiser, loss and augmentation), then for ``unet_spectral`` (the same recipe, linear path
included, with a plain UNet as the spatial path: whether the sinc bank and SS2D stages earn their cost), with
``cv.baselines`` fitting logistic regression and a random
forest on each fold's training part and scoring them on exactly the pixels the network is scored on. Printed
per model: training wall time per fold (epochs, validation included), mean training samples/s, peak memory,
held-out OA and mIoU per fold, per-class IoU (mean over folds), the baselines' held-out mIoU on the same pixels
and the gap to logistic regression (the gate: at or above it in every fold).

Aerial protocol (``presets/aerial.yaml``): the Dubai tiles prepared once, tiles 1-4 split into train/val by
spatial blocks and tiles 5-6 whole as the test split (held-out scenes); unet and cmt_unet trained side by side
with the preset (``train.time_limit`` minutes each, the schedule fitted to it), then, also side by side,
``ssmseg eval RUN`` of both, the unet's with ``eval.baselines=true``: the model and the baselines (fitted on
the training split of tiles 1-4) on exactly the same test pixels, each labelled pixel once; the cmt_unet's
is scored on the same pixels and compared with those baselines. Printed per model: training wall time and
epochs, samples/s, peak memory, the load average while it trained, held-out OA/mIoU, per-class IoU, the
baselines on the same pixels and the gap to the random forest (the gate: at or above it).

``--quick`` trains the aerial models for 3 minutes instead of the preset's time limit and fits the aerial random
forest with 10 trees instead of 50 (a smoke run of the aerial protocol, not its result; within 10 minutes on 2
idle cores); the cube protocol, about half a minute, runs as in the full benchmark. The stage table at the end
gives each stage's wall time and its estimate on 2 idle cores (the slowest process's CPU time; a time-limited
training's wall time).
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
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
# Run in each child at exit: its peak resident memory (kB) and CPU seconds (user + system, with its children's).
PEAK = (
    "import atexit, os, pathlib; atexit.register(lambda: print('VmHWM', next(l.split()[1] for l in "
    "pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')), 'CPU', "
    "sum(os.times()[:4])))"
)
# Minutes of the stages without a time limit on 2 idle cores, for the estimate printed at the start: the
# slowest process's CPU time measured by this script (docs/experiment_log.md, issue 21, 2026-12-06): the cv of
# 30 epochs 25-30 s (the hyperspectral preset's count) and unet_spectral's after it about 20 s, the Dubai prep
# 10-12 s, the evals 122-124 s with a 10-tree forest (--quick) and 190 s with the preset's 50 trees (unet with
# the baselines; cmt_unet beside it 132 s).
MEASURED = {
    "full": {"hyperspectral": 0.8, "aerial_prep": 0.2, "aerial_eval": 3.2},
    "quick": {"hyperspectral": 0.8, "aerial_prep": 0.2, "aerial_eval": 2.0},
}
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


def start(args: list[str], cwd: Path, threads: int, log: Path) -> subprocess.Popen:
    """Start one ssmseg command in a fresh process, its output to ``log``."""
    code = f"{PEAK}; import sys; sys.argv = ['ssmseg', *{args!r}]; from ssmseg.cli.app import main; main()"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:  # a file, not a pipe: two processes side by side never block on a full pipe
        return subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


class Ran(NamedTuple):
    wall: float  # seconds from the start of the stage to this command's end
    peak_mb: float  # peak resident memory
    cpu: float  # CPU seconds (user + system, its own and its children's): about its wall time on an idle core


STAGES: list[tuple[str, float, float]] = []  # (stage, wall seconds, estimate on 2 idle cores)


def side_by_side(
    commands: list[tuple[list[str], Path]], threads: int, logs: list[Path], stage: str, limited: bool = False
) -> list[Ran]:
    """Run ssmseg commands at the same time, one process each, as one stage of the protocol. The stage's estimate
    on 2 idle cores is its slowest command's CPU time, or with ``limited`` (trainings that stop at a time limit
    whatever the load) its wall time."""
    began = time.perf_counter()
    procs = [start(args, cwd, threads, log) for (args, cwd), log in zip(commands, logs, strict=True)]
    ended: dict[int, float] = {}
    while len(ended) < len(procs):  # each command's own wall time, not the slowest one's
        for i, proc in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.perf_counter() - began
                if proc.returncode:  # one failed: stop the others rather than wait out their time limits
                    for other in procs:
                        if other.poll() is None:
                            other.terminate()
        time.sleep(0.2)
    results, failed = [], []
    for i, (proc, (args, _), log) in enumerate(zip(procs, commands, logs, strict=True)):
        text = log.read_text()
        if proc.returncode:
            failed.append(f"ssmseg {' '.join(args)} failed or was stopped (log {log}):\n{text[-3000:]}")
        line = next((ln.split() for ln in text.splitlines() if ln.startswith("VmHWM")), ["", 0, "", 0])
        results.append(Ran(ended[i], int(line[1]) / 1024, float(line[3])))
    if failed:
        raise RuntimeError("\n".join(failed))
    wall = max(r.wall for r in results)
    STAGES.append((stage, wall, wall if limited else max(r.cpu for r in results)))
    return results


def ssmseg(args: list[str], cwd: Path, threads: int, log: Path, stage: str) -> Ran:
    """Run one ssmseg command in a fresh process, as one stage."""
    return side_by_side([(args, cwd)], threads, [log], stage)[0]


def loadavg() -> str:
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


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


def show(dataset: str, model: str, rows: list[dict], ran: Ran) -> None:
    print(
        f"\n{dataset} / {model}: cv wall {ran.wall:.0f} s (CPU {ran.cpu:.0f} s; prep excluded), "
        f"peak RSS {ran.peak_mb:.0f} MB"
    )
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
    ssmseg(
        ["prep", "--preset", "salinas_a", "--out", str(dataset)],
        source,
        args.threads,
        work / "logs" / "prep_salinas_a.log",
        "Salinas-A prep",
    )
    runs = f"runtime.out_dir={work / 'runs'}"
    common = [
        "--folds",
        "3",
        *sets(f"data.dataset={dataset}", runs, f"runtime.threads={args.threads}", "cv.baselines=true", *quick(args)[0]),
    ]
    models = (("ssmu_net", []), ("unet", UNET_RESET))
    load0 = loadavg()
    done = side_by_side(
        [
            (["cv", "--preset", "hyperspectral", *common, *sets(*extra, f"runtime.name={m}")], ROOT)
            for m, extra in models
        ],
        args.threads,
        [work / "logs" / f"cv_{m}.log" for m, _ in models],
        "Salinas-A cv, ssmu_net and unet side by side",
    )
    print(f"\nSalinas-A: ssmu_net and unet side by side, load {load0} -> {loadavg()}")
    # the same recipe with a plain UNet as the spatial path: whether the sinc bank and SS2D stages earn their cost
    twin = ("unet_spectral", ["model.name=unet_spectral"])
    done += side_by_side(
        [(["cv", "--preset", "hyperspectral", *common, *sets(*twin[1], f"runtime.name={twin[0]}")], ROOT)],
        args.threads,
        [work / "logs" / f"cv_{twin[0]}.log"],
        "Salinas-A cv, unet_spectral (the recipe with a plain UNet)",
    )
    results = {}
    for (model, _), ran in zip((*models, twin), done, strict=True):
        rows = fold_rows(work / "runs" / model)
        show("Salinas-A (3-fold block cv)", model, rows, ran)
        results[model] = rows
    mean = {m: sum(r["miou"] for r in rows) / len(rows) for m, rows in results.items()}
    for other, what in (("unet", "a plain unet of the same budget"), ("unet_spectral", "the recipe's plain-UNet twin")):
        print(f"\nssmu_net - {other} ({what}), mean held-out mIoU: {mean['ssmu_net'] - mean[other]:+.4f}")
    return results


def aerial(args: argparse.Namespace, work: Path) -> dict[str, dict]:
    """Dubai tiles 1-4 (train/val) -> tiles 5-6 (held-out test split), unet and cmt_unet trained side by side,
    then evaluated side by side, the baselines on the same pixels."""
    source = Path(args.data).resolve() / "aerial" / "dubai"
    if not source.is_dir():
        print(f"\naerial: skipped, no Dubai tiles at {source}")
        return {}
    dataset, logs = work / "dubai", work / "logs"
    # the preset names its tiles relative to the Dubai folder: prep runs there, as its header says
    prep = ssmseg(
        ["prep", "--preset", "aerial", "--out", str(dataset)],
        source,
        args.threads,
        logs / "prep_dubai.log",
        "Dubai prep",
    )
    print(f"\naerial: Dubai tiles 1-4 train/val, 5-6 held out (prep {prep.wall:.0f} s)")
    common = sets(f"data.dataset={dataset}", f"runtime.out_dir={work / 'runs'}", f"runtime.threads={args.threads}")
    common += sets(*quick(args)[1])
    models = ("unet", "cmt_unet")
    runs = {m: work / "runs" / f"aerial_{m}" for m in models}
    load0 = loadavg()
    trained = side_by_side(
        [
            (["train", "--preset", "aerial", *common, *sets(f"model.name={m}", f"runtime.name=aerial_{m}")], ROOT)
            for m in models
        ],
        args.threads,
        [logs / f"train_{m}.log" for m in models],
        "aerial trainings side by side",
        limited=True,
    )
    load1 = loadavg()
    # the unet's eval fits the baselines; the cmt_unet's is scored on the same test pixels and compared with them
    fit = {"unet": ["eval.baselines=true", *quick(args)[2]], "cmt_unet": []}
    evals = side_by_side(
        [
            (
                [
                    "eval",
                    str(runs[m]),
                    "--out",
                    str(work / "eval" / m),
                    *sets(*fit[m], f"runtime.threads={args.threads}"),
                ],
                ROOT,
            )
            for m in models
        ],
        args.threads,
        [logs / f"eval_{m}.log" for m in models],
        "aerial evals side by side",
    )
    print(
        f"aerial: unet and cmt_unet trained side by side (load {load0} -> {load1}), then evaluated side by side "
        f"(load at the end {loadavg()})"
    )
    results, baselines = {}, None
    for m, train, ev in zip(models, trained, evals, strict=True):
        results[m] = show_aerial(m, runs[m], work / "eval" / m, train, ev, baselines)
        baselines = baselines or results[m]["baselines"]
    return results


def show_aerial(model: str, run: Path, out: Path, train: Ran, ev: Ran, fitted: dict | None) -> dict:
    """One model's aerial figures; ``fitted``: the baselines another model's eval fitted on the same test pixels."""
    history = json.loads((run / "history.json").read_text())
    epochs = history["epochs"]
    m = json.loads((out / "metrics.json").read_text())
    train_s = sum(e["seconds"] + e.get("val_seconds", 0.0) for e in epochs)
    methods = m.get("baselines", {}).get("methods") or fitted or {}
    best = (history.get("best") or {}).get("epoch")
    print(
        f"\naerial / {model}: training {train_s / 60:.1f} min ({len(epochs)} epochs, best {best}, "
        f"{history.get('stop_reason')}), command wall {train.wall:.0f} s (CPU {train.cpu:.0f} s), peak RSS "
        f"{train.peak_mb:.0f} MB, {sum(e['samples_per_s'] for e in epochs) / len(epochs):.1f} samples/s; eval "
        f"{ev.wall:.0f} s (CPU {ev.cpu:.0f} s, peak RSS {ev.peak_mb:.0f} MB)"
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


def quick(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """The overrides of ``--quick``: (hyperspectral cv, aerial training, aerial eval)."""
    return ([], ["train.time_limit=3"], ["baseline.trees=10"]) if args.quick else ([], [], [])


def estimate(args: argparse.Namespace) -> float:
    """Print the expected wall time on 2 idle cores, stage by stage: the presets' time limits (read from them,
    with the ``--quick`` overrides) and, for the stages without one, earlier measurements; return minutes."""
    sys.path.insert(0, str(ROOT))
    from ssmseg.config.loading import build_config

    hyper, air = (
        build_config(p, overrides=o) for p, o in zip(("hyperspectral", "aerial"), quick(args)[:2], strict=True)
    )
    mode = "quick" if args.quick else "full"
    folds, limit = hyper.cv.folds, hyper.train.time_limit
    stages = [
        (
            f"Salinas-A prep and {folds}-fold cv, ssmu_net and unet side by side, then unet_spectral (at most "
            f"2 x {folds} x {limit:g} min, train.time_limit per fold)",
            MEASURED[mode]["hyperspectral"],
        ),
        ("Dubai prep", MEASURED[mode]["aerial_prep"]),
        (
            "unet and cmt_unet trained side by side (the preset's train.time_limit; the last epoch may run past it)",
            air.train.time_limit,
        ),
        ("both evals of tiles 5-6 side by side, the baselines fitted in the unet's", MEASURED[mode]["aerial_eval"]),
    ]
    total = sum(m for _, m in stages)
    worst = total - stages[0][1] + 2 * folds * limit  # the pair side by side, then unet_spectral alone
    print(f"estimated wall time on 2 idle cores: {total:.0f} min ({worst:.0f} if every cv fold ran to its time limit)")
    for what, minutes in stages:
        print(f"  {minutes:5.1f} min  {what}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3-minute aerial trainings, a 10-tree forest")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (1: two processes, 2 cores)")
    parser.add_argument(
        "--out", default=None, help="keep the datasets, runs and logs here (default: a temporary folder)"
    )
    args = parser.parse_args()
    began, load0 = time.perf_counter(), loadavg()
    print(
        f"benchmarks/accuracy.py{' --quick' if args.quick else ''}: {args.threads} thread(s) per process, "
        f"load {loadavg()}"
    )
    estimate(args)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out).resolve() if args.out else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        hyperspectral(args, work)
        aerial(args, work)
    print(f"\n{'stage':<46} {'wall s':>7} {'idle s':>7}")
    for stage, wall, idle in STAGES:
        print(f"{stage:<46} {wall:7.0f} {idle:7.0f}")
    print(
        f"total wall time {(time.perf_counter() - began) / 60:.1f} min at load {load0} -> {loadavg()}; on 2 idle "
        f"cores about {sum(idle for *_, idle in STAGES) / 60:.1f} min (idle s: each stage at its slowest process's "
        "CPU time, the time-limited trainings at their wall time)"
    )


if __name__ == "__main__":
    main()
