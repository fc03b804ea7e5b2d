"""Which epoch to keep, judged on validation data only: split halves of each val split (figures printed, no asserts).

    python benchmarks/epoch_selection_val.py [--set key=value ...] [--seeds 0 1 2] [--folds 3]
        [--data /work/data/salinas_a] [--preset hyperspectral] [--out runs/epoch_selection_val]

Best-val-epoch selection scores the chosen epoch on the very pixels that chose it, so its val figure is biased
upwards and cannot be compared with another policy's. Here each run (exactly the training ``ssmseg cv`` runs for
one fold, as ``hyperspectral_select.py`` does) records every epoch's confusion matrix per val patch; the val
patches are split in two halves (alternating block ids), a policy chooses an epoch on one half and is scored on
the other, in both directions. Policies:

- ``best``: the best val mIoU over all epochs (the loop's best.pt, ties: the earliest);
- ``last``: the last epoch (no choice);
- ``best_joint``: the best val mIoU among the epochs after ``model.linear_epochs`` (the spatial path trains).

Rule (docs/experiment_log.md, fixed before the runs): per fold, the mean over seeds and both directions of the
other half's mIoU; score = the worst fold (ties: the mean over folds).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hyperspectral_select import config

from ssmseg import outputs
from ssmseg.data.datasets import PatchDataset
from ssmseg.experiments.train import cap_warmup, check_config, train
from ssmseg.tasks.segmentation import task as seg_task
from ssmseg.tasks.segmentation.metrics import metrics_from_confusion

POLICIES = ("best", "last", "best_joint")


class Recorder:
    """Wraps the task's validation_step: every val patch's confusion matrix, in loader order, every epoch."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.original = seg_task.SegmentationTask.validation_step

    def __enter__(self) -> Recorder:
        rec = self

        def step(task, model, batch):
            out = rec.original(task, model, batch)
            logits = model(batch["image"]).detach().argmax(1)
            for p, y in zip(logits, batch["mask"], strict=True):
                keep = y != task.ignore_index
                cm = np.zeros((task.num_classes, task.num_classes), np.int64)
                np.add.at(cm, (y[keep].numpy(), p[keep].numpy()), 1)
                rec.rows.append(cm)
            return out

        seg_task.SegmentationTask.validation_step = step
        return self

    def __exit__(self, *exc) -> None:
        seg_task.SegmentationTask.validation_step = self.original


def miou(cm: np.ndarray, classes: list[str]) -> float:
    return metrics_from_confusion(cm, classes)["miou"]


def choose(curve: list[float], policy: str, linear_epochs: int) -> int:
    """0-based epoch index a policy keeps from a per-epoch val mIoU curve (ties: the earliest, as the loop)."""
    if policy == "last":
        return len(curve) - 1
    first = linear_epochs if policy == "best_joint" and linear_epochs < len(curve) else 0
    return max(range(first, len(curve)), key=lambda i: (curve[i], -i))


def one_run(args: argparse.Namespace, seed: int, fold: int, root: Path) -> dict[str, Any]:
    cfg = cap_warmup(config(args, seed, root))
    check_config(cfg)
    run_dir = root / f"seed_{seed}" / f"fold_{fold}"
    outputs.remove_own(run_dir, "run")
    with Recorder() as rec:
        result = train(cfg, fold=fold, run_dir=run_dir)
    ds = PatchDataset(args.data, "val", fold)
    n, epochs = len(ds), len(result.history)
    cms = np.stack(rec.rows).reshape(epochs, n, *rec.rows[0].shape)
    blocks = [ds.manifest["patches"][i]["block"] for i in ds.indices]
    order = sorted(range(n), key=lambda i: blocks[i])
    halves = [order[0::2], order[1::2]]
    classes = ds.manifest["classes"]
    per_half = [[miou(cms[e, h].sum(0), classes) for e in range(epochs)] for h in halves]
    loop_curve = [r["val/miou"] for r in result.history]
    whole = [miou(cms[e].sum(0), classes) for e in range(epochs)]
    out = {
        "seed": seed,
        "fold": fold,
        "epochs": epochs,
        "patches": n,
        "check": max(abs(a - b) for a, b in zip(whole, loop_curve, strict=True)),
    }
    for policy in POLICIES:
        scores = []
        for a, b in ((0, 1), (1, 0)):
            e = choose(per_half[a], policy, cfg.model.linear_epochs)
            scores.append({"epoch": e + 1, "other_half": per_half[b][e]})
        out[policy] = scores
    out["half_pixels"] = [int(cms[0, h].sum()) for h in halves]
    return out


def cell(scores: list[dict[str, Any]]) -> str:
    return " ".join(f"e{s['epoch']:>2} {s['other_half']:.3f}" for s in scores)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--preset", default="hyperspectral")
    p.add_argument("--data", type=Path, default=Path("/work/data/salinas_a"))
    p.add_argument("--out", type=Path, default=Path("runs/epoch_selection_val"))
    args = p.parse_args()
    args.data = args.data.resolve()
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for fold in range(args.folds):
            done = root / f"seed_{seed}_fold_{fold}.json"
            if not done.exists():
                done.write_text(json.dumps(one_run(args, seed, fold, root), indent=1))
            rows.append(json.loads(done.read_text()))
    print(f"{'seed':>4} {'fold':>4} {'px A/B':>9} " + " ".join(f"{p:>22}" for p in POLICIES))
    for r in rows:
        cells = " ".join(f"{cell(r[p]):>22}" for p in POLICIES)
        print(f"{r['seed']:>4} {r['fold']:>4} {r['half_pixels'][0]:>4}/{r['half_pixels'][1]:<4} {cells}")
    print(f"check: per-patch sums vs the loop's val mIoU, max |diff| {max(r['check'] for r in rows):.1e}")
    summary = {}
    for policy in POLICIES:
        per_fold = [
            statistics.fmean(s["other_half"] for r in rows if r["fold"] == f for s in r[policy])
            for f in range(args.folds)
        ]
        summary[policy] = {"per_fold": per_fold, "score": min(per_fold), "mean": statistics.fmean(per_fold)}
        folds = " ".join(f"{v:.4f}" for v in per_fold)
        print(f"{policy:<11} score {min(per_fold):.4f} mean {statistics.fmean(per_fold):.4f}  per fold {folds}")
    (root / "summary.json").write_text(json.dumps({"sets": args.set, "rows": rows, "summary": summary}, indent=1))
    ranked = sorted(POLICIES, key=lambda p: (summary[p]["score"], summary[p]["mean"]), reverse=True)
    best = summary["best"]
    ships = ranked[0] != "best" and summary[ranked[0]]["score"] > best["score"]
    print(f"rule: {ranked[0] if ships else 'best'} ({'beats' if ships else 'nothing beats'} best-val selection)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
