"""``ssmseg baseline``: classical per-pixel classifiers on a prepared dataset, as the floor a network must beat.

Fitted on the training pixels of the dataset's split (for ``--fold K``: the training folds) and scored on the
same test pixels, with the same metrics, as ``ssmseg eval`` (the test split; for ``--fold K``: the held-out
fold K): each labelled pixel once (the region its patch owns), without the boundary band of
``eval.boundary_ignore``, and ``eval.exclude_classes`` left out of the macro means exactly as for the model.
Patches are read through ``PatchDataset``, so they are normalised with the training statistics of that
split, and ignored labels (255) count nowhere.

- ``majority``: always the most frequent class of the training split (not of the scored pixels).
- ``logistic``: multinomial logistic regression on the per-pixel spectrum (standardised on the sample).
- ``random_forest``: a random forest on the spectrum plus the mean and standard deviation in small windows
  (``baseline.windows``) of the first ``baseline.context_components`` principal components of the spectrum.

Training pixels are drawn at random, at most ``baseline.max_train_pixels``; pixels shared by overlapping
training patches are drawn from once. Test pixels are read as eval reads them.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier  # imported here, not inside a method's timing
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ssmseg import outputs
from ssmseg.config import Config
from ssmseg.engine.runtime import explicit_threads
from ssmseg.errors import ConfigError, InputError
from ssmseg.progress import info, progress_bar
from ssmseg.tasks.results import BaselineResult
from ssmseg.tasks.segmentation.inference import owned_mask
from ssmseg.tasks.segmentation.metrics import boundary_band, metrics_from_confusion

PREDICT_CHUNK = 200_000  # test pixels predicted at a time: memory stays bounded for any test split
FOREST_STEP = 4  # trees fitted between two progress updates (a multiple of 2 cores)


class _Constant:
    """A classifier that always answers one class (the majority, or a training sample of one class)."""

    def __init__(self, cls: int) -> None:
        self.cls = cls

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.cls, np.int64)


def _parts(dataset: Path, fold: int | None, scored: str | None = None):
    from ssmseg.data import manifest as mf
    from ssmseg.data.datasets import PatchDataset

    if fold is not None:
        folds = int(mf.load(dataset).get("split", {}).get("folds", 0))
        if not 0 <= fold < folds:
            raise ConfigError(f"--fold {fold}: '{dataset}' was prepared with {folds} folds; use 0 to {folds - 1}")
    scored = scored or ("test" if fold is None else "heldout")
    return PatchDataset(dataset, "train", fold), PatchDataset(dataset, scored, fold)


class Features:
    """Per-pixel features of a normalised patch: the spectrum, and for the forest local statistics of its
    leading principal components."""

    def __init__(self, windows: list[int], components: int) -> None:
        self.windows, self.components = windows, components
        self.mean: np.ndarray | None = None
        self.basis: np.ndarray | None = None  # (k, bands)

    def fit_context(self, spectra: np.ndarray) -> None:
        """Principal components of the training spectra (n, bands); all bands when there are few."""
        bands = spectra.shape[1]
        self.mean = spectra.mean(0)
        if bands <= self.components:
            self.basis = np.eye(bands, dtype=np.float32)
            return
        sample = spectra[:: max(1, len(spectra) // 20_000)]  # the sample is random already; 20000 rows suffice
        centred = (sample - self.mean).astype(np.float64)
        _, vectors = np.linalg.eigh(centred.T @ centred)  # eigenvalues ascending: the last are the leading ones
        self.basis = vectors[:, ::-1][:, : self.components].T.astype(np.float32)

    def context(self, image: np.ndarray) -> np.ndarray:
        """(bands, h, w) -> (2 * len(windows) * k, h, w): local mean and std of the components."""
        from scipy.ndimage import uniform_filter

        comps = np.einsum("kb,bhw->khw", self.basis, image - self.mean[:, None, None]).astype(np.float32)
        out = []
        for w in self.windows:
            mean = uniform_filter(comps, size=(1, w, w), mode="reflect")
            sq = uniform_filter(comps * comps, size=(1, w, w), mode="reflect")
            out += [mean, np.sqrt(np.maximum(sq - mean * mean, 0.0))]
        return np.concatenate(out, 0)

    @property
    def n_context(self) -> int:
        return 0 if self.basis is None else 2 * len(self.windows) * len(self.basis)


def _sample_training(train, cap: int, rng: np.random.Generator, ignore: int):
    """Chosen training pixels: {position in train: flat pixel indices}, the class counts of every labelled
    (owned) training pixel, and how many there are."""
    labels = np.load(train.folder / "labels.npy", mmap_mode="r")
    patches = train.manifest["patches"]
    n_classes = train.num_classes
    where, counts = [], np.zeros(n_classes, np.int64)
    for j in train.indices:
        lab = np.asarray(labels[j])
        keep = (lab != ignore) & owned_mask(patches[j], lab.shape)
        flat = np.flatnonzero(keep)
        where.append(flat)
        counts += np.bincount(lab.reshape(-1)[flat], minlength=n_classes)[:n_classes]
    sizes = np.array([len(w) for w in where])
    total = int(sizes.sum())
    chosen = np.sort(rng.choice(total, min(cap, total), replace=False)) if total else np.array([], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    picks: dict[int, np.ndarray] = {}
    for i in range(len(where)):
        lo, hi = np.searchsorted(chosen, [starts[i], starts[i + 1]])
        if hi > lo:
            picks[i] = where[i][chosen[lo:hi] - starts[i]]
    return picks, counts, total


def run_baseline(cfg: Config, dataset: Path, fold: int | None = None, out: Path | None = None) -> BaselineResult:
    """Fit and score ``cfg.baseline.methods`` on ``dataset``; write baseline.json/.csv into a new folder
    (``out``, or ``runtime.out_dir/baseline_<dataset>[_fold<K>]``, then ``-2``, ...)."""
    dataset = Path(dataset)
    bc, seed = cfg.baseline, cfg.runtime.seed
    train, test = _parts(dataset, fold)
    key = {
        "dataset": str(dataset.resolve()),
        "input_hash": train.manifest.get("input_hash"),
        "fold": fold,
        "baseline": bc.model_dump(mode="json"),
        "seed": seed,
    }
    if out is None:
        name = f"baseline_{dataset.resolve().name}" + ("" if fold is None else f"_fold{fold}")
        out = outputs.pick_name(Path(cfg.runtime.out_dir), name, "baseline", key)
    else:
        outputs.claim(out, "baseline", key, mismatch=f"'{out}' holds baselines of other settings; choose another --out")
    from threadpoolctl import threadpool_limits

    # BLAS on one thread unless runtime.threads says otherwise: these matrices are small, and a multithreaded
    # OpenBLAS on a busy machine was measured 20-50x slower (threads spinning for cores others hold).
    threads = explicit_threads(cfg.runtime)
    with threadpool_limits(limits=threads or 1, user_api="blas"):
        results, notes = _fit_and_score(train, test, bc, seed, fold, dataset, threads, _scoring(cfg))
    tmp = outputs.staging(out)
    try:
        _write(tmp, results)
        done = outputs.publish(tmp, out, "baseline", key, about=f"ssmseg baseline of {dataset}")
    except BaseException:
        outputs.discard(tmp)
        raise
    return BaselineResult(done, results, notes)


def baseline_scores(cfg: Config, dataset: Path, fold: int | None = None, scored: str | None = None) -> dict[str, Any]:
    """The baselines' OA, mIoU and per-class IoU on the test split (or held-out fold ``fold``; ``scored``
    names another part, e.g. the test split of a fold's run), fitted on the training part of the run (or
    fold), without writing anything: for eval and cv outputs."""
    from threadpoolctl import threadpool_limits

    train, test = _parts(Path(dataset), fold, scored)
    with threadpool_limits(limits=explicit_threads(cfg.runtime) or 1, user_api="blas"):
        results, _ = _fit_and_score(
            train,
            test,
            cfg.baseline,
            cfg.runtime.seed,
            fold,
            Path(dataset),
            explicit_threads(cfg.runtime),
            _scoring(cfg),
        )
    methods = {
        name: {
            "oa": m["oa"],
            "miou": m["miou"],
            "seconds": m["seconds"],
            "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items()},
        }
        for name, m in results["methods"].items()
    }
    part = scored or ("test" if fold is None else "heldout")
    where = "test split" if part == "test" else f"held-out fold {fold}"
    return {
        "methods": methods,
        "scored_on": where,
        "train_pixels": results.get("train_pixels"),
        "test_pixels": results["test_pixels"],
        "protocol": results["protocol"],
        "scored_majority": results["scored_majority"],
        "settings": cfg.baseline.model_dump(mode="json"),
    }


def _scoring(cfg: Config) -> dict[str, Any]:
    """The eval protocol's choices that decide which pixels and classes count (``eval.*``)."""
    return {"exclude_classes": list(cfg.eval.exclude_classes), "boundary_ignore": cfg.eval.boundary_ignore}


@dataclass
class Fitted:
    """The baselines fitted on a training split: the models, the forest's features, and how they were fitted."""

    models: dict[str, Any]
    features: Features
    fit_seconds: dict[str, float]
    feature_seconds: float
    labelled: int  # labelled training pixels
    used: int  # of them drawn to fit logistic and random_forest
    counts: np.ndarray  # (K,) class counts of every labelled training pixel
    notes: list[str]

    @property
    def forest(self) -> bool:
        return "random_forest" in self.models

    def pixel_features(self, image: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(bands, h, w) normalised image and flat indices ``keep`` -> (n, bands) spectra and, for the forest,
        (n, context) local statistics computed over the whole image."""
        spectra = image.reshape(image.shape[0], -1)[:, keep].T
        if not self.forest:
            return spectra, None
        return spectra, self.features.context(image).reshape(self.features.n_context, -1)[:, keep].T

    def predict(self, method: str, spectra: np.ndarray, context: np.ndarray | None) -> np.ndarray:
        x = np.concatenate([spectra, context], 1) if method == "random_forest" else spectra
        return self.models[method].predict(x)

    def describe(self, fitted_on: str, seed: int, cap: int) -> str:
        return (
            f"majority on the class counts of all {self.labelled:,} labelled training pixels of the {fitted_on}; "
            f"logistic and random_forest (and the forest's principal components) on {self.used:,} of them, drawn "
            f"at random without replacement (seed {seed}, baseline.max_train_pixels {cap:,})"
        )


def score_methods(
    fitted: Fitted, cms: dict[str, np.ndarray], predict_seconds: dict[str, float], classes: list[str], exclude
) -> dict[str, dict[str, Any]]:
    """Each method's metrics from its confusion matrix, with its fit and predict seconds (logged)."""
    methods = {}
    for method, cm in cms.items():
        metrics = metrics_from_confusion(cm, classes, exclude)
        seconds = fitted.fit_seconds[method] + predict_seconds[method]
        methods[method] = {
            **metrics,
            "confusion_matrix": cm.tolist(),
            "fit_seconds": fitted.fit_seconds[method],
            "predict_seconds": predict_seconds[method],
            "seconds": seconds,
        }
        info(f"{method}: mIoU {metrics['miou']:.4f}, OA {metrics['oa']:.4f}, {seconds:.1f} s (fit and predict)")
    return methods


def fit_baselines(train, bc, seed: int, fold: int | None, dataset: Path, threads: int | None) -> Fitted:
    """Fit ``bc.methods`` on at most ``bc.max_train_pixels`` labelled pixels of ``train`` (a PatchDataset)."""
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    forest = "random_forest" in bc.methods
    started = time.perf_counter()
    picks, counts, labelled = _sample_training(train, bc.max_train_pixels, rng, train.ignore_index)
    spectra, targets, chosen = [], [], []
    for i, flat in picks.items():
        item = train[i]
        image, lab = item["image"].numpy(), item["mask"].numpy().reshape(-1)
        spectra.append(image.reshape(image.shape[0], -1)[:, flat].T)
        targets.append(lab[flat])
        chosen.append((i, flat))
    x_spec = np.concatenate(spectra) if spectra else np.zeros((0, train.bands), np.float32)
    y = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    if not len(y):
        raise InputError(
            f"'{dataset}' has no labelled training pixel{'' if fold is None else f' outside fold {fold}'}"
            "; prepare it with other split settings"
        )
    feats = Features(bc.windows, bc.context_components)
    x_ctx = None
    if forest:
        feats.fit_context(x_spec)
        x_ctx = np.concatenate(
            [feats.context(train[i]["image"].numpy()).reshape(feats.n_context, -1)[:, flat].T for i, flat in chosen]
        )
    feature_seconds = time.perf_counter() - started
    info(f"features: {len(y)} of {labelled} labelled training pixels in {feature_seconds:.1f} s")

    models, fit_seconds = {}, {}
    for method in bc.methods:
        t0 = time.perf_counter()
        models[method] = _fit(method, x_spec, x_ctx, y, counts, bc, seed, threads, notes)
        fit_seconds[method] = time.perf_counter() - t0
        info(f"{method}: fitted in {fit_seconds[method]:.1f} s")
    return Fitted(models, feats, fit_seconds, feature_seconds, labelled, len(y), counts, notes)


def _fit_and_score(
    train, test, bc, seed: int, fold: int | None, dataset: Path, threads: int | None, scoring: dict[str, Any]
):
    classes, ignore, n = list(train.manifest["classes"]), train.ignore_index, train.num_classes
    exclude, radius = scoring["exclude_classes"], scoring["boundary_ignore"]
    unknown = [c for c in exclude if c not in classes]
    if unknown:
        raise ConfigError(
            f"eval.exclude_classes: {', '.join(map(repr, unknown))} not among the classes of "
            f"'{dataset}' ({', '.join(classes)})"
        )
    fitted = fit_baselines(train, bc, seed, fold, dataset, threads)
    models, notes, forest = fitted.models, fitted.notes, fitted.forest
    feats, labelled, counts = fitted.features, fitted.labelled, fitted.counts

    cms = {m: np.zeros((n, n), np.int64) for m in bc.methods}
    predict_seconds = dict.fromkeys(bc.methods, 0.0)
    buffer: list[tuple[np.ndarray, np.ndarray | None, np.ndarray]] = []

    def flush() -> None:
        if not buffer:
            return
        xs = np.concatenate([b[0] for b in buffer])
        xc = np.concatenate([b[1] for b in buffer]) if forest else None
        truth = np.concatenate([b[2] for b in buffer])
        for method in models:
            t0 = time.perf_counter()
            pred = fitted.predict(method, xs, xc)
            predict_seconds[method] += time.perf_counter() - t0
            cms[method] += np.bincount(truth * n + pred, minlength=n * n).reshape(n, n)
        buffer.clear()

    pending, test_pixels = 0, 0
    test_patches = test.manifest["patches"]
    with progress_bar("baseline test patches", len(test)) as advance:
        for i in range(len(test)):
            item = test[i]
            image, mask = item["image"].numpy(), item["mask"].numpy()
            lab = mask.reshape(-1)
            # as eval counts them: each labelled pixel once (its patch owns it), outside the boundary band
            scored = (mask != ignore) & owned_mask(test_patches[test.indices[i]], mask.shape)
            scored &= ~boundary_band(mask[None], radius, ignore)[0]
            keep = np.flatnonzero(scored)
            if len(keep):
                buffer.append((*fitted.pixel_features(image, keep), lab[keep].astype(np.int64)))
                pending += len(keep)
                test_pixels += len(keep)
            if pending >= PREDICT_CHUNK:
                flush()
                pending = 0
            advance()
    flush()
    if not test_pixels:
        part = "test split" if fold is None else f"fold {fold}"
        raise InputError(
            f"the {part} of '{dataset}' holds no labelled pixel to score; prepare it with other split settings"
        )

    methods = score_methods(fitted, cms, predict_seconds, classes, exclude)
    support = next(iter(cms.values())).sum(1)  # the scored pixels per true class (the same for every method)
    scored_majority = {"class": classes[int(support.argmax())], "oa": float(support.max() / support.sum())}
    fitted_on = "train split" if fold is None else f"train split outside fold {fold}"
    scored_on = "test split" if fold is None else f"held-out fold {fold}"
    protocol = {
        "metrics": "metrics_from_confusion, as ssmseg eval: OA and kappa micro, mIoU and mean F1 macro over "
        "classes present in truth or prediction, less exclude_classes",
        "exclude_classes": exclude,
        "boundary_ignore": radius,
        "majority": "majority predicts the training split's most frequent class",
        "pixels": "each labelled pixel of the test patches once (the region its patch owns; ignore index and the "
        "boundary band excluded), as ssmseg eval counts them",
        "ignore_index": ignore,
        "normalisation": f"{train.manifest['normalize']} with statistics '{train.stats_key}' (training pixels)",
        "fitted": fitted.describe(fitted_on, seed, bc.max_train_pixels),
        "scored_pixels": f"{test_pixels:,}: every scored pixel of the {scored_on} predicted by every method, none "
        f"subsampled (in chunks of {PREDICT_CHUNK:,} pixels)",
    }
    results = {
        "dataset": str(dataset),
        "fold": fold,
        "fitted_on": fitted_on,
        "scored_on": scored_on,
        "classes": classes,
        "protocol": protocol,
        "train_pixels": {
            "labelled": labelled,
            "used": fitted.used,
            "max_train_pixels": bc.max_train_pixels,
            "seed": seed,
            "class_counts": counts.tolist(),
        },
        "test_pixels": test_pixels,
        "scored_majority": scored_majority,
        "features": {
            "logistic": train.bands,
            "random_forest": train.bands + feats.n_context,
            "windows": bc.windows,
            "context_components": 0 if feats.basis is None else len(feats.basis),
        },
        "feature_seconds": fitted.feature_seconds,
        "methods": methods,
        "notes": notes,
    }
    return results, notes


def _fit(method, x_spec, x_ctx, y, counts, bc, seed, threads, notes):
    if method == "majority":
        return _Constant(int(counts.argmax()))
    if len(np.unique(y)) < 2:
        notes.append(f"{method}: the training sample holds one class only; it predicts that class")
        return _Constant(int(y[0]))
    if method == "logistic":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=bc.max_iter))

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x_spec, y)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            notes.append(f"logistic: not converged in {bc.max_iter} iterations; raise baseline.max_iter")
        return model
    return fit_forest(np.concatenate([x_spec, x_ctx], 1), y, bc.trees, bc.max_depth, threads or -1, seed)


def fit_forest(x: np.ndarray, y: np.ndarray, trees: int, max_depth: int | None, n_jobs: int, seed: int):
    """A random forest fitted a few trees at a time (``warm_start``) with a progress line: scikit-learn draws each
    added tree's seed as a single fit would, so the forest is the same as ``fit`` with all trees at once."""
    step = FOREST_STEP
    model = RandomForestClassifier(
        n_estimators=min(step, trees), max_depth=max_depth, n_jobs=n_jobs, random_state=seed, warm_start=True
    )
    with progress_bar("random_forest: fitting trees", trees) as advance:
        while True:
            before = len(getattr(model, "estimators_", []))
            model.fit(x, y)
            advance(model.n_estimators - before)
            if model.n_estimators >= trees:
                return model
            model.n_estimators = min(model.n_estimators + step, trees)


def _write(folder: Path, results: dict[str, Any]) -> None:
    (folder / "baseline.json").write_text(json.dumps(results, indent=1))
    classes = results["classes"]
    with open(folder / "baseline.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "oa", "miou", "mean_f1", "kappa", "seconds", *(f"iou/{c}" for c in classes)])
        for name, m in results["methods"].items():
            ious = ("" if m["per_class"][c]["iou"] is None else f"{m['per_class'][c]['iou']:.6f}" for c in classes)
            w.writerow(
                [name, *(f"{m[k]:.6f}" for k in ("oa", "miou", "mean_f1", "kappa")), f"{m['seconds']:.3f}", *ious]
            )
