"""Chance baselines for the metric in use, on the pixels the run actually scored.

Two predictors that know only the class frequencies: always the training majority class, and drawing each
pixel's class from the training priors. Their confusion matrices follow from the class counts of the scored
pixels, and the metric is computed from them exactly as the evaluator computes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssmseg.report.runs import Run

CHANCE_METRICS = ("oa", "miou", "mean_f1", "kappa")
# history.json's run block: counts of the validation pixels actually scored, first the explicit one.
SCORED_KEYS = ("class_counts_val_scored", "class_counts_val")


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    """OA, mIoU, mean F1 and kappa of a (classes, classes) confusion matrix (rows: truth), exactly as the
    evaluator computes them (macro over the classes present in truth or prediction)."""
    cm = np.asarray(cm, dtype=np.float64)
    total, tp = cm.sum(), np.diag(cm)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = tp / (support + predicted - tp)
        f1 = 2 * tp / (support + predicted)
    oa = tp.sum() / total if total else 0.0
    expected = (support * predicted).sum() / total**2 if total else 0.0
    kappa = (oa - expected) / (1 - expected) if total and expected < 1 else 0.0
    return {
        "oa": float(oa),
        "miou": float(iou[present].mean()) if present.any() else 0.0,
        "mean_f1": float(f1[present].mean()) if present.any() else 0.0,
        "kappa": float(kappa),
    }


def _counts(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, int | float) and v >= 0 for v in value)


def scored_counts(run: Run) -> tuple[np.ndarray | None, str, bool | None]:
    """The class counts of the validation pixels the run scored: (counts, the key they came from, exact).
    ``exact`` is False when only the whole split's counts are known but a subset was scored
    (data.max_val_patches), None when history.json does not say how many items were scored."""
    info = run.info
    for key in SCORED_KEYS:
        if _counts(info.get(key)):
            exact = True if key == "class_counts_val_scored" else _whole_split(run)
            return np.asarray(info[key], np.float64), key, exact
    return None, "", None


def _whole_split(run: Run) -> bool | None:
    scored, total = run.info.get("val_items"), run.info.get("val_items_total")
    if not (isinstance(scored, int) and isinstance(total, int)):
        return None
    return scored >= total


def chance_baselines(metric: str, run: Run) -> tuple[dict[str, Any] | None, str | None]:
    """The chance value of ``metric`` on the scored validation pixels, or (None, why)."""
    if metric not in CHANCE_METRICS:
        return None, f"no chance baseline for {metric}: computed only for {', '.join(CHANCE_METRICS)}"
    support, key, exact = scored_counts(run)
    if support is None:
        return None, f"no chance baseline for {metric}: history.json has no run.class_counts_val"
    train = run.info.get("class_counts_train")
    ok_train = _counts(train) and len(train) == len(support) and sum(train) > 0
    prior_src = "class_counts_train" if ok_train else key
    prior = np.asarray(train if ok_train else support, np.float64)
    if prior.sum() == 0 or support.sum() == 0:
        return None, f"no chance baseline for {metric}: the class counts are all zero"
    prior = prior / prior.sum()
    majority = np.zeros((len(support), len(support)))
    majority[:, int(prior.argmax())] = support
    classes = run.info.get("classes") if isinstance(run.info.get("classes"), list) else None
    name = str(classes[int(prior.argmax())]) if classes and len(classes) == len(support) else str(int(prior.argmax()))
    scored, total = run.info.get("val_items"), run.info.get("val_items_total")
    return {
        "metric": metric,
        "majority_class": {"class": name, "value": metrics_from_confusion(majority)[metric]},
        "class_prior_draw": {"value": metrics_from_confusion(np.outer(support, prior))[metric]},
        "pixels_from": key,
        "pixels": float(support.sum()),
        "exact": exact,
        "scored_items": scored,
        "total_items": total,
        "priors_from": prior_src,
    }, None


def chance_note(chance: dict[str, Any]) -> str | None:
    """A sentence when the baselines are not on exactly the scored pixels (a validation subset)."""
    if chance["exact"] is not False:
        return None
    return (
        f"chance baselines use the class counts of the whole validation split: the run scored "
        f"{chance['scored_items']} of its {chance['total_items']} patches (data.max_val_patches) and history.json "
        "has no class_counts_val_scored, so they are estimates for the scored pixels"
    )
