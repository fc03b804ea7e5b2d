"""Choose the hyperspectral recipe on validation data only: per fold and seed, the model's val mIoU against the
classical baselines on the same val pixels (figures printed and written, no asserts).

    python benchmarks/hyperspectral_select.py NAME [--set key=value ...] [--seeds 0 1 2] [--folds 3]
        [--data /work/data/salinas_a] [--out runs/hyperspectral_select] [--preset hyperspectral] [--heldout]
    python benchmarks/hyperspectral_select.py --compare [--out runs/hyperspectral_select]

Without ``--heldout`` (selection): for each seed and fold, exactly the training ``ssmseg cv --preset PRESET``
runs for that fold (``experiments.train.train(cfg, fold=k)``: train split outside fold k, epoch chosen on the
val split outside fold k), with ``runtime.threads=1`` and ``runtime.seed`` = the seed, and the overrides
given. The held-out fold is never scored. Per fold and seed it reports, all on the val split outside the fold:

- ``selected``: the model's val mIoU at the epoch selection chose (best.pt; selection-biased upwards);
- ``plateau``: the model's mean val mIoU over the last third of the epochs that ran (the recipe's level,
  less biased by the choice of one spike of a flat curve);
- ``last`` / ``last_tta``: latest.pt (the last epoch, not selected) scored with the eval protocol without and
  with test-time augmentation (``eval.tta`` is not used by validation or epoch selection, only by eval and
  cv's held-out scoring, so this is the only val-side measure of it);
- ``logistic`` / ``forest``: ``baseline_scores(..., scored="val")``, fitted on the same training part and
  scored on the same val pixels as the model.

The decision rule (docs/experiment_log.md, fixed before the runs): per fold, the seed-mean of
``plateau - logistic``; a candidate's score is the minimum over folds (ties: the mean over folds); the best
candidate ships only if its score is above the preset's. Each run prints its score; ``--compare`` ranks them.

``--compare`` prints every candidate under OUT (the ``summary.json`` each selection wrote) ranked by the rule,
against the candidate named ``preset``, and the TTA candidate (the preset's per-fold gap plus its seed-mean TTA
gain at the last epoch).

With ``--heldout`` (the one held-out run of the chosen recipe): ``ssmseg cv`` per seed with cv.baselines, and
per fold and seed the held-out mIoU against logistic regression and the forest on the same held-out pixels.

Each (seed, fold) result is written to OUT/NAME/ as it completes and reused on a rerun. The load average is
printed beside each run: on a shared machine times are comparable only side by side.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as benchmarks/accuracy.py: BLAS on one thread, before numpy loads

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from ssmseg import outputs
from ssmseg.config import build_config
from ssmseg.data.datasets import PatchDataset
from ssmseg.engine import checkpoint as ckpt
from ssmseg.experiments.cv import run_cv
from ssmseg.experiments.train import cap_warmup, check_config, train
from ssmseg.tasks.segmentation.baseline import baseline_scores
from ssmseg.tasks.segmentation.evaluate import load_model, metric_protocol, patch_confusion
from ssmseg.tasks.segmentation.metrics import metrics_from_confusion

METHODS = {"logistic": "logistic", "forest": "random_forest"}


def config(args: argparse.Namespace, seed: int, out: Path, extra: list[str] = ()):
    sets = [
        f"data.dataset={args.data}",
        "runtime.threads=1",
        f"runtime.seed={seed}",
        f"runtime.out_dir={out}",
        "runtime.device=cpu",
        *args.set,
        *extra,
    ]
    return build_config(preset=args.preset, overrides=sets)


def val_miou(cfg, state: dict[str, Any], data: Path, fold: int, tta: bool) -> float:
    """A checkpoint's mIoU on the val split outside ``fold`` under the eval protocol (each labelled pixel once)."""
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"tta": tta})})
    ds = PatchDataset(data, "val", fold)
    device = torch.device("cpu")
    cm = patch_confusion(cfg, state, load_model(state, device), device, ds, f"val fold {fold}")
    return metrics_from_confusion(cm, state["classes"], metric_protocol(cfg, state)["exclude_classes"])["miou"]


def one_run(args: argparse.Namespace, seed: int, fold: int, root: Path) -> dict[str, Any]:
    """Train one fold as cv does and measure it on the val split only."""
    cfg = cap_warmup(config(args, seed, root))
    check_config(cfg)
    run_dir = root / f"seed_{seed}" / f"fold_{fold}"
    outputs.remove_own(run_dir, "run")  # an unfinished run starts over, as cv's folds do
    result = train(cfg, fold=fold, run_dir=run_dir)
    curve = [(r["epoch"], r["val/miou"]) for r in result.history]
    tail = curve[len(curve) - max(1, len(curve) // 3) :]
    best = result.best["epoch"]
    base = baseline_scores(cfg, args.data, fold, scored="val")["methods"]
    last = ckpt.load(run_dir / "checkpoints" / "latest.pt")
    row = {
        "seed": seed,
        "fold": fold,
        "epochs": len(curve),
        "best_epoch": best,
        "selected": next(v for e, v in curve if e == best),
        "plateau": statistics.fmean(v for _, v in tail),
        "plateau_epochs": [tail[0][0], tail[-1][0]],
        "last": val_miou(cfg, last, args.data, fold, tta=False),
        "last_tta": val_miou(cfg, last, args.data, fold, tta=True),
        "last_history": curve[-1][1],  # the loop's own val mIoU of the last epoch: `last` must agree
        "train_s": sum(r["seconds"] + r.get("val_seconds", 0.0) for r in result.history),
        "curve": [v for _, v in curve],
        **{k: base[m]["miou"] for k, m in METHODS.items()},
        "load": os.getloadavg()[0],
    }
    return row


def summarise(rows: list[dict[str, Any]], folds: int) -> dict[str, Any]:
    """Per fold, seed-means of the val statistics and their gaps to logistic regression; the rule's score."""
    per_fold = {}
    for fold in range(folds):
        fr = [r for r in rows if r["fold"] == fold]
        mean = {k: statistics.fmean(r[k] for r in fr) for k in ("selected", "plateau", "last", "last_tta", *METHODS)}
        gaps = [r["plateau"] - r["logistic"] for r in fr]
        mean["plateau_gap"] = statistics.fmean(gaps)
        mean["plateau_gap_sd"] = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        mean["tta_gain_last"] = statistics.fmean(r["last_tta"] - r["last"] for r in fr)
        per_fold[fold] = mean
    gaps = [per_fold[f]["plateau_gap"] for f in per_fold]
    return {"per_fold": per_fold, "score": min(gaps), "tie_break": statistics.fmean(gaps)}


def show(name: str, args: argparse.Namespace, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print(f"\n{name}: preset {args.preset} + {args.set or 'nothing'} (validation only; mIoU on the val split)")
    print(
        f"{'seed':>4} {'fold':>4} {'ep':>3} {'best':>4} {'selected':>8} {'plateau':>7} {'last':>6} {'lastTTA':>7} "
        f"{'logit':>6} {'forest':>6} {'plat-lg':>7} {'train s':>7} {'load':>5}"
    )
    for r in sorted(rows, key=lambda r: (r["fold"], r["seed"])):
        print(
            f"{r['seed']:>4} {r['fold']:>4} {r['epochs']:>3} {r['best_epoch']:>4} {r['selected']:8.4f} "
            f"{r['plateau']:7.4f} {r['last']:6.4f} {r['last_tta']:7.4f} {r['logistic']:6.4f} {r['forest']:6.4f} "
            f"{r['plateau'] - r['logistic']:+7.4f} {r['train_s']:7.1f} {r['load']:5.1f}"
        )
    for f, m in summary["per_fold"].items():
        print(
            f"  fold {f} seed-mean: selected {m['selected']:.4f}, plateau {m['plateau']:.4f}, logistic "
            f"{m['logistic']:.4f}, forest {m['forest']:.4f}, plateau - logistic {m['plateau_gap']:+.4f} "
            f"(sd over seeds {m['plateau_gap_sd']:.4f}), TTA gain at the last epoch {m['tta_gain_last']:+.4f}"
        )
    drift = max(abs(r["last"] - r["last_history"]) for r in rows)
    print(f"  check: eval-protocol val mIoU of latest.pt vs the loop's own, max |diff| {drift:.2e}")
    print(
        f"  SCORE (min over folds of seed-mean plateau - logistic) {summary['score']:+.4f}, "
        f"mean {summary['tie_break']:+.4f}"
    )


def selection(args: argparse.Namespace, root: Path) -> None:
    rows = []
    for seed in args.seeds:
        for fold in range(args.folds):
            done = root / f"seed_{seed}_fold_{fold}.json"
            if done.exists():
                rows.append(json.loads(done.read_text()))
                continue
            row = one_run(args, seed, fold, root)
            done.write_text(json.dumps(row, indent=1))
            rows.append(row)
    summary = summarise(rows, args.folds)
    (root / "summary.json").write_text(
        json.dumps({"sets": args.set, "preset": args.preset, "seeds": args.seeds, **summary}, indent=1)
    )
    show(root.name, args, rows, summary)


def heldout(args: argparse.Namespace, root: Path) -> None:
    """The one held-out cv of a recipe chosen on validation: per seed, ssmseg cv with baselines."""
    rows = []
    for seed in args.seeds:
        cfg = config(args, seed, root, ["cv.baselines=true", f"runtime.name=cv_seed_{seed}"])
        summary = run_cv(cfg, folds=args.folds)
        for fold in summary["folds"]:
            hist = json.loads((Path(summary["run_dir"]) / f"fold_{fold['fold']}" / "history.json").read_text())
            methods = fold["baselines"]["methods"]
            rows.append(
                {
                    "seed": seed,
                    "fold": fold["fold"],
                    "best_epoch": fold["best_epoch"],
                    "miou": fold["heldout/miou"],
                    "train_s": sum(e["seconds"] + e.get("val_seconds", 0.0) for e in hist["epochs"]),
                    **{k: methods[m]["miou"] for k, m in METHODS.items()},
                    "load": os.getloadavg()[0],
                }
            )
    (root / "heldout.json").write_text(json.dumps({"sets": args.set, "preset": args.preset, "rows": rows}, indent=1))
    print(f"\n{root.name}: HELD-OUT, preset {args.preset} + {args.set or 'nothing'}")
    print(f"{'seed':>4} {'fold':>4} {'best':>4} {'mIoU':>6} {'logit':>6} {'forest':>6} {'gap lg':>7} {'train s':>7}")
    for r in sorted(rows, key=lambda r: (r["fold"], r["seed"])):
        print(
            f"{r['seed']:>4} {r['fold']:>4} {r['best_epoch']:>4} {r['miou']:6.4f} {r['logistic']:6.4f} "
            f"{r['forest']:6.4f} {r['miou'] - r['logistic']:+7.4f} {r['train_s']:7.1f}"
        )
    below = [(r["seed"], r["fold"]) for r in rows if r["miou"] < r["logistic"]]
    print(
        f"  below logistic regression in (seed, fold): {below or 'none'}; mean mIoU "
        f"{statistics.fmean(r['miou'] for r in rows):.4f}"
    )


def compare(out: Path) -> None:
    """Every candidate's rule score (and per-fold seed-mean gaps with their sd over seeds), best first."""
    found = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.resolve().glob("*/summary.json"))}
    if "preset" in found:  # eval.tta: the preset's runs, scored with TTA at the last epoch
        pf = found["preset"]["per_fold"]
        gaps = {f: {**m, "plateau_gap": m["plateau_gap"] + m["tta_gain_last"]} for f, m in pf.items()}
        found["preset + eval.tta"] = {
            "sets": ["eval.tta=true"],
            "per_fold": gaps,
            "score": min(g["plateau_gap"] for g in gaps.values()),
            "tie_break": statistics.fmean(g["plateau_gap"] for g in gaps.values()),
        }
    ranked = sorted(found.items(), key=lambda kv: (kv[1]["score"], kv[1]["tie_break"]), reverse=True)
    print(f"{'candidate':<24} {'score':>7} {'mean':>7}  per fold: seed-mean plateau - logistic (sd over seeds)")
    for name, s in ranked:
        folds = " ".join(
            f"{m['plateau_gap']:+.4f} ({m['plateau_gap_sd']:.4f})" for _, m in sorted(s["per_fold"].items())
        )
        print(f"{name:<24} {s['score']:+7.4f} {s['tie_break']:+7.4f}  {folds}  {' '.join(s['sets'])}")
    if "preset" in found:
        best, ref = ranked[0], found["preset"]
        ships = best[0] != "preset" and best[1]["score"] > ref["score"]
        print(f"rule: {best[0] if ships else 'preset'} ({'beats' if ships else 'no candidate beats'} the preset)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="candidate name (its folder under --out)")
    p.add_argument("--set", action="append", default=[], help="key=value over the preset; repeatable")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--preset", default="hyperspectral")
    p.add_argument("--data", type=Path, default=Path("/work/data/salinas_a"))
    p.add_argument("--out", type=Path, default=Path("runs/hyperspectral_select"))
    p.add_argument("--heldout", action="store_true", help="the one held-out cv of the chosen recipe")
    p.add_argument("--compare", action="store_true", help="rank the candidates under --out by the rule")
    args = p.parse_args()
    if args.compare:
        return compare(args.out)
    if args.name is None:
        p.error("give a candidate NAME (or --compare)")
    args.data = args.data.resolve()
    root = (args.out / args.name).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (heldout if args.heldout else selection)(args, root)


if __name__ == "__main__":
    main()
