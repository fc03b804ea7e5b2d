"""Does a linear classifier on [spectrum, k x k mean spectrum] beat the pixel-only logistic regression? On the
val split outside each held-out fold only (the held-out fold is never read), no network.

    python benchmarks/spectral_context_val.py [--data /work/data/salinas_a] [--ks 0 3 5] [--folds 3]
        [--preset hyperspectral] [--seed 0] [--scored val|heldout]

Per fold: the training pixels ``ssmseg baseline`` draws (same sample, seed, StandardScaler, default C,
``baseline.max_iter``), features ``spectral_features(patch, k)`` computed on each normalised patch as
SSMU-Net's head with ``model.spectral_context: k`` computes them, and the val mIoU under the eval protocol
(each owned labelled pixel once, boundary band, ``eval.exclude_classes``). k = 0 is the pixel-only baseline and
must equal ``baseline_scores(..., scored="val")``'s logistic mIoU (printed beside it as a check).
``--scored heldout`` scores the held-out folds instead: a diagnostic after the held-out cv, never a selection.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssmseg.config import build_config
from ssmseg.models.layers.context import spectral_features
from ssmseg.tasks.segmentation.baseline import _parts, _sample_training, _scoring, baseline_scores
from ssmseg.tasks.segmentation.inference import owned_mask
from ssmseg.tasks.segmentation.metrics import boundary_band, metrics_from_confusion


def feats(item, k: int) -> np.ndarray:
    """A dataset item's (C', H*W) features."""
    f = spectral_features(item["image"][None], k)[0].numpy()
    return f.reshape(f.shape[0], -1)


def one_fold(cfg, data: Path, fold: int, ks: list[int], scored: str = "val") -> dict[int, float]:
    bc, scoring = cfg.baseline, _scoring(cfg)
    train, val = _parts(data, fold, scored)
    n, ignore = train.num_classes, train.ignore_index
    picks, _, _ = _sample_training(train, bc.max_train_pixels, np.random.default_rng(cfg.runtime.seed), ignore)
    out = {}
    for k in ks:
        xs, ys = [], []
        for i, flat in picks.items():
            item = train[i]
            xs.append(feats(item, k)[:, flat].T)
            ys.append(item["mask"].numpy().reshape(-1)[flat])
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=bc.max_iter))
        model.fit(np.concatenate(xs), np.concatenate(ys))
        cm = np.zeros((n, n), np.int64)
        for i in range(len(val)):
            item = val[i]
            mask = item["mask"].numpy()
            keep = (mask != ignore) & owned_mask(val.manifest["patches"][val.indices[i]], mask.shape)
            keep &= ~boundary_band(mask[None], scoring["boundary_ignore"], ignore)[0]
            flat = np.flatnonzero(keep)
            if len(flat):
                pred = model.predict(feats(item, k)[:, flat].T)
                cm += np.bincount(mask.reshape(-1)[flat] * n + pred, minlength=n * n).reshape(n, n)
        out[k] = metrics_from_confusion(cm, list(train.manifest["classes"]), scoring["exclude_classes"])["miou"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("/work/data/salinas_a"))
    p.add_argument("--ks", type=int, nargs="+", default=[0, 3, 5])
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--preset", default="hyperspectral")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scored", choices=["val", "heldout"], default="val", help="heldout: a diagnostic only")
    args = p.parse_args()
    data = args.data.resolve()
    cfg = build_config(
        preset=args.preset, overrides=[f"data.dataset={data}", "runtime.threads=1", f"runtime.seed={args.seed}"]
    )
    rows = {}
    for fold in range(args.folds):
        rows[fold] = one_fold(cfg, data, fold, args.ks, args.scored)
        check = baseline_scores(cfg, data, fold, scored=args.scored)["methods"]["logistic"]["miou"]
        print(
            f"fold {fold}: "
            + ", ".join(f"k={k} {v:.4f} ({v - rows[fold][0]:+.4f})" for k, v in rows[fold].items())
            + f"; baseline_scores logistic {check:.4f} (k=0 must equal it)"
        )
    for k in args.ks:
        gains = [rows[f][k] - rows[f][0] for f in rows]
        print(
            f"k={k}: {args.scored} gain over pixel-only per fold {' '.join(f'{g:+.4f}' for g in gains)}, mean "
            f"{statistics.fmean(gains):+.4f}; >= 0 in every fold: {min(gains) >= 0}"
        )


if __name__ == "__main__":
    main()
