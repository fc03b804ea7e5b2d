"""The classical baselines on whole scenes (``ssmseg eval RUN --input ... --mask ... --set eval.baselines=true``).

Fitted as for the test split (``baseline.py``: the run's training split, ``baseline.*``), then scored on exactly
the pixels eval scores the model on: each finished strip of a scene (``inference.predict_scene``) is read again
with a halo of rows, normalised with the checkpoint's statistics (those of the training patches), and every
pixel the model's confusion matrix counts (labelled, valid, outside the boundary band) is predicted by every
baseline. The forest's local statistics are computed over the scene (the halo makes a strip's values those of
the whole scene; reflected at the scene's edges only), as the model sees the scene through blended windows,
where the test split's baselines see each patch alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ssmseg.config import Config
from ssmseg.data.io import Source
from ssmseg.engine.runtime import explicit_threads
from ssmseg.errors import InputError
from ssmseg.tasks.segmentation.baseline import PREDICT_CHUNK, fit_baselines, score_methods
from ssmseg.tasks.segmentation.inference import Normaliser


class SceneBaselines:
    """Fit the baselines once; then ``add`` the scored pixels of each strip, ``take`` each scene's confusion
    matrices, and ``summary`` the pooled metrics in the format of ``baseline.baseline_scores``."""

    def __init__(self, cfg: Config, state: dict[str, Any], dataset: Path) -> None:
        from threadpoolctl import threadpool_limits

        from ssmseg.data.datasets import PatchDataset

        fold = state.get("fold")
        if not (dataset / "manifest.json").is_file():
            raise InputError(
                f"eval.baselines fits the baselines on the training split of the run's dataset '{dataset}', which is "
                "not there; give it with --dataset, or leave eval.baselines out"
            )
        train = PatchDataset(dataset, "train", fold)
        expected = (state.get("normalization") or {}).get("stats_key")
        if train.stats_key != expected or list(train.manifest["classes"]) != list(state["classes"]):
            raise InputError(
                f"eval.baselines: '{dataset}' is not the dataset this model was trained on (statistics "
                f"'{train.stats_key}' vs '{expected}', classes {train.manifest['classes']}); give the run's own "
                "dataset with --dataset"
            )
        self.cfg, self.state, self.dataset, self.fold = cfg, state, dataset, fold
        self.threads = explicit_threads(cfg.runtime)
        with threadpool_limits(limits=self.threads or 1, user_api="blas"):
            self.fitted = fit_baselines(train, cfg.baseline, cfg.runtime.seed, fold, dataset, self.threads)
        self.halo = max(cfg.baseline.windows) // 2 if self.fitted.forest else 0
        self.n = state["num_classes"]
        self.predict_seconds = dict.fromkeys(self.fitted.models, 0.0)
        self.current = self._zeros()

    def _zeros(self) -> dict[str, np.ndarray]:
        return {m: np.zeros((self.n, self.n), np.int64) for m in self.fitted.models}

    def add(self, src: Source, norm: Normaliser, row0: int, truth: np.ndarray, keep: np.ndarray) -> None:
        """Score the pixels ``keep`` (h, W) of scene rows [row0, row0 + h), whose labels are ``truth`` (h, W)."""
        from threadpoolctl import threadpool_limits

        h, width = keep.shape
        top, bottom = max(0, row0 - self.halo), min(src.info.height, row0 + h + self.halo)
        data, _ = norm(src.read(top, 0, bottom - top, width))  # invalid pixels 0, as in the training patches
        where = np.zeros(data.shape[1:], bool)
        where[row0 - top : row0 - top + h] = keep
        spectra, context = self.fitted.pixel_features(data, np.flatnonzero(where))
        labels = truth[keep].astype(np.int64)  # row-major, the order of flatnonzero above
        with threadpool_limits(limits=self.threads or 1, user_api="blas"):
            for lo in range(0, len(labels), PREDICT_CHUNK):
                part = slice(lo, lo + PREDICT_CHUNK)
                for method in self.fitted.models:
                    t0 = time.perf_counter()
                    pred = self.fitted.predict(method, spectra[part], None if context is None else context[part])
                    self.predict_seconds[method] += time.perf_counter() - t0
                    cm = np.bincount(labels[part] * self.n + pred, minlength=self.n * self.n)
                    self.current[method] += cm.reshape(self.n, self.n)

    def take(self) -> dict[str, np.ndarray]:
        """The confusion matrices of the scene just scored; the next scene starts from zero."""
        done, self.current = self.current, self._zeros()
        return done

    def summary(self, per_scene: list[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Pooled over the scenes: each method's OA, mIoU and per-class IoU, as ``baseline_scores`` gives them."""
        classes, exclude = list(self.state["classes"]), list(self.cfg.eval.exclude_classes)
        cms = {m: sum((s[m] for s in per_scene), np.zeros((self.n, self.n), np.int64)) for m in self.fitted.models}
        methods = score_methods(self.fitted, cms, self.predict_seconds, classes, exclude)
        support = next(iter(cms.values())).sum(1)
        fitted_on = "train split" if self.fold is None else f"train split outside fold {self.fold}"
        bc = self.cfg.baseline
        return {
            "methods": {
                name: {
                    "oa": m["oa"],
                    "miou": m["miou"],
                    "seconds": m["seconds"],
                    "per_class_iou": {c: v["iou"] for c, v in m["per_class"].items()},
                    "confusion_matrix": m["confusion_matrix"],
                }
                for name, m in methods.items()
            },
            "scored_on": "the scenes' scored pixels (those of the model's confusion matrix)",
            "train_pixels": {"labelled": self.fitted.labelled, "used": self.fitted.used, "seed": self.cfg.runtime.seed},
            "test_pixels": int(support.sum()),
            "protocol": {
                "fitted": self.fitted.describe(fitted_on, self.cfg.runtime.seed, bc.max_train_pixels),
                "dataset": str(self.dataset),
                "pixels": "every pixel the model is scored on (labelled, valid, outside the boundary band), once",
                "features": "the spectrum normalised with the checkpoint's statistics; for random_forest local "
                f"statistics in windows {bc.windows} computed over the whole scene",
                "exclude_classes": exclude,
                "majority": "majority predicts the training split's most frequent class",
            },
            "scored_majority": {"class": classes[int(support.argmax())], "oa": float(support.max() / support.sum())},
            "settings": bc.model_dump(mode="json"),
        }
