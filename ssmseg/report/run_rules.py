"""The rules that judge one run's history (see ``rules.RULES`` for when each fires)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ssmseg.report.rules import BOUNDED_01, THRESHOLDS, Context, Finding, stop_advice, tail
from ssmseg.report.series import fmt, mean, noise, smooth, trend


def rule_still_improving(c: Context) -> Finding | None:
    if c.val is None or c.n < 2 or c.run.stop_reason == "diverged" or c.best is None:
        return None
    if c.n < 5:
        return _still_improving_short(c)
    window = tail(c)
    slope, t = trend(c.epochs[window], c.s[window])
    if not np.isfinite(slope):
        return None
    gain = slope * float(c.epochs[window[-1]] - c.epochs[window[0]])
    need = THRESHOLDS["still_improving_gain"] * c.scale
    if not (gain > need and t > THRESHOLDS["still_improving_t"] and c.best >= window[0]):
        return None
    rising = "rising" if c.sign > 0 else "falling"
    short = f"; undertrained, still learning after only {c.steps_words()}" if c.short() else ""
    return Finding(
        "still_improving",
        "warning",
        f"{c.monitor} was still {rising} over the last {len(window)} epochs ({c.e(window[0])}–{c.e(window[-1])}: "
        f"{'+' if c.v(gain) >= 0 else ''}{fmt(c.v(gain))} on the fitted line, t = {t:.1f}) and was best at "
        f"epoch {c.e(c.best)} of {c.n}{short}: {stop_advice(c)}.",
        {
            "window": [c.e(window[0]), c.e(window[-1])],
            "gain": c.v(gain),
            "slope_per_epoch": c.v(slope),
            "t": t,
            "needed_gain": need,
            "best_epoch": c.e(c.best),
            "epochs": c.n,
            "optimizer_steps": c.total_steps,
        },
        refs=["curves", "summary"],
    )


def _still_improving_short(c: Context) -> Finding | None:
    """2 to 4 epochs: too few to fit a trend or measure noise; the last epoch best and still gaining."""
    ok = np.flatnonzero(np.isfinite(c.s))
    if len(ok) < 2 or c.best != ok[-1]:
        return None
    whole, last = float(c.s[ok[-1]] - c.s[ok[0]]), float(c.s[ok[-1]] - c.s[ok[-2]])
    need = THRESHOLDS["still_improving_gain"] * whole
    if not (whole > 0 and last > need):
        return None
    steps = f" ({c.steps_words()})" if c.steps_words() else ""
    return Finding(
        "still_improving",
        "warning",
        f"undertrained, still learning: {c.monitor} improved in its last epoch by {fmt(c.v(last))} "
        f"({fmt(c.v(float(c.s[ok[-2]])))} -> {fmt(c.v(float(c.s[ok[-1]])))}, {last / whole:.0%} of its whole gain) "
        f"and was best at the last of only {c.n} epochs{steps}; {c.n} epochs are too few to measure the noise, so "
        f"the trend is not tested: {stop_advice(c)}.",
        {
            "epochs": c.n,
            "last_gain": c.v(last),
            "whole_gain": c.v(whole),
            "needed_share": THRESHOLDS["still_improving_gain"],
            "best_epoch": c.e(c.best),
            "optimizer_steps": c.total_steps,
        },
        refs=["curves", "summary"],
    )


def rule_degradation(c: Context) -> Finding | None:
    if c.val is None or c.best is None or c.n - 1 - c.best < 3:
        return None
    end = np.arange(max(c.best + 1, c.n - 5), c.n)
    final = mean(c.s[end])
    top = float(np.nanmax(c.s_sm[: c.best + 1 + c.w // 2]))
    drop = top - final
    need = max(THRESHOLDS["degradation_drop"] * c.scale, THRESHOLDS["noise_factor"] * c.noise)
    if not (np.isfinite(drop) and drop > need):
        return None
    rel = drop / abs(top) if top else math.nan
    return Finding(
        "degradation_after_best",
        "warning",
        f"{c.monitor} got worse after its best at epoch {c.e(c.best)}: smoothed best {fmt(c.v(top))}, mean of "
        f"the last {len(end)} epochs {fmt(c.v(final))} (worse by {fmt(drop)}, {rel:.1%}); {c.n - 1 - c.best} "
        "epochs ran after the best: "
        + (
            "best.pt keeps the last epoch (train.select: last); whether the best val epoch would do better on "
            "unseen ground is measured on split halves of the val split by benchmarks/epoch_selection_val.py."
            if c.run.select == "last"
            else "best.pt keeps the best epoch, and early stopping (train.patience) would have stopped sooner."
        ),
        {
            "best_epoch": c.e(c.best),
            "smoothed_best": c.v(top),
            "final_mean": c.v(final),
            "drop": drop,
            "relative_drop": rel,
            "needed_drop": need,
            "final_epochs": [c.e(end[0]), c.e(end[-1])],
        },
        refs=["curves", "stages"],
    )


def rule_overfitting(c: Context) -> Finding | None:
    if c.gap is None or c.best is None or c.n - 1 - c.best < 3:
        return None
    g_sm = smooth(c.gap, c.w)
    end = np.arange(max(c.best + 1, c.n - 5), c.n)
    g_end, g_best = mean(c.gap[end]), float(g_sm[c.best])
    rise = g_end - g_best
    need = max(THRESHOLDS["overfit_gap_rise"] * c.scale, THRESHOLDS["noise_factor"] * noise(c.gap))
    train_s = c.sign * c.train
    train_gain = mean(train_s[end]) - float(smooth(train_s, c.w)[c.best])
    if not (np.isfinite(rise) and rise > need and train_gain > 0):
        return None
    onset = int(np.nanargmax(np.where(np.isfinite(c.s_sm), c.s_sm, -np.inf)))  # where validation stopped improving
    what = "train − validation" if c.sign > 0 else "validation − train"
    return Finding(
        "overfitting",
        "warning",
        f"overfitting from about epoch {c.e(onset)}, where the smoothed {c.monitor} was at its best: the {what} gap in "
        f"{c.metric} widened from {fmt(g_best)} at the best epoch {c.e(c.best)} to {fmt(g_end)} over the last "
        f"{len(end)} epochs while train/{c.metric} kept improving (by {fmt(train_gain)}): more regularisation "
        "(optim.weight_decay, model.dropout, augmentation), more data, or stop at the best epoch.",
        {
            "onset_epoch": c.e(onset),
            "gap_at_best": g_best,
            "gap_final": g_end,
            "gap_rise": rise,
            "needed_rise": need,
            "train_gain_after_best": train_gain,
            "gap_is": what,
        },
        refs=["curves", "stages"],
    )


def rule_lr_decayed_early(c: Context) -> Finding | None:
    if c.lr is None or c.val is None or not np.isfinite(c.lr).any() or c.gain <= 0:
        return None
    lr = c.lr
    peak = int(np.nanargmax(lr))
    small = THRESHOLDS["lr_small_fraction"] * lr[peak]
    d = next((i for i in range(peak + 1, c.n) if lr[i] <= small), None)
    if d is None or not np.isfinite(c.s_sm[d]):
        return None
    first = float(c.s_sm[np.flatnonzero(np.isfinite(c.s_sm))[0]])
    share = (float(c.s_sm[d]) - first) / c.gain
    later = c.s_sm[d + 1 :]
    remaining = float(np.nanmax(later)) - float(c.s_sm[d]) if np.isfinite(later).any() else math.nan
    need = max((1 - THRESHOLDS["lr_early_share"]) * c.gain, THRESHOLDS["noise_factor"] * c.noise)
    if not (share < THRESHOLDS["lr_early_share"] and remaining > need):
        return None
    return Finding(
        "lr_decayed_early",
        "warning",
        f"the LR had decayed to {fmt(lr[d], 3)} ({lr[d] / lr[peak]:.1%} of its peak {fmt(lr[peak], 3)}) by epoch "
        f"{c.e(d)}, when {c.monitor} had made only {share:.0%} of its gain (smoothed {fmt(c.v(c.s_sm[d]))}, top "
        f"{fmt(c.v(c.top))}) and gained {fmt(remaining)} more at that small LR: decay later (schedule.name, "
        "train.epochs, schedule.min_lr) or raise optim.lr.",
        {
            "decayed_epoch": c.e(d),
            "lr_then": float(lr[d]),
            "lr_peak": float(lr[peak]),
            "peak_lr_epoch": c.e(peak),
            "share_of_gain_then": share,
            "gain_after": remaining,
            "needed_gain_after": need,
        },
        refs=["curves", "stages"],
    )


def rule_low_and_close(c: Context) -> Finding | None:
    if c.train is None or c.val is None or c.sign < 0 or c.metric not in BOUNDED_01 or c.n < 2:
        return None
    window = tail(c)
    tr, va = mean(c.train[window]), mean(c.val[window])
    slope, t = trend(c.epochs[window], c.train[window])
    train_gain = slope * float(c.epochs[window[-1]] - c.epochs[window[0]]) if np.isfinite(slope) else 0.0
    flat = not (train_gain > THRESHOLDS["still_improving_gain"] * c.scale and t > THRESHOLDS["still_improving_t"])
    low, close = THRESHOLDS["low_metric"], THRESHOLDS["close_gap"]
    if not (tr <= low and va <= low and abs(tr - va) <= close and (flat or c.short())):
        return None
    evidence = {
        "train_mean": tr,
        "val_mean": va,
        "window": [c.e(window[0]), c.e(window[-1])],
        "train_gain": train_gain,
        "train_t": t,
        "low": low,
        "close": close,
        "optimizer_steps": c.total_steps,
        "steps_per_epoch": c.size.get("steps_per_epoch"),
        "short_run_steps": THRESHOLDS["short_run_steps"],
    }
    both = (
        f"train and validation {c.metric} both ended low and close: {fmt(tr)} and {fmt(va)} over the last "
        f"{len(window)} epochs (at most {low}, {fmt(abs(tr - va))} apart)"
    )
    if c.short():
        return Finding(
            "too_short",
            "warning",
            f"{both}, after only {c.steps_words()}: undertrained, too short to judge the model's capacity; train "
            "for more steps (train.epochs, data.max_patches) before changing the model or the regularisation.",
            evidence,
            refs=["curves", "summary"],
        )
    if c.n < 5 or (c.total_steps is None and c.n < 10):
        return None  # too few epochs (and unknown steps) to call a flat training metric a capacity limit
    unknown = "" if c.total_steps is not None else " (the optimiser steps are unknown: check the run was not short)"
    return Finding(
        "low_and_close",
        "warning",
        f"{both}, with the training metric flat after {c.steps_words() or f'{c.n} epochs'}{unknown}: the model "
        "does not fit even the training data; too little capacity (model.*) or too much regularisation "
        "(optim.weight_decay, model.dropout, augmentation).",
        evidence,
        refs=["curves", "summary"],
    )


def rule_divergence(c: Context) -> Finding | None:
    bad: list[str] = []
    ev: dict[str, Any] = {"stop_reason": c.run.stop_reason}
    for key in dict.fromkeys(("train/loss", "val/loss", c.monitor, "lr")):
        y = c.cur.get(key)
        if y is None or not len(y):
            continue
        if not np.isfinite(y).any():
            if any(key in r for r in c.run.records):  # recorded, never finite (NaN or null from the start)
                bad.append(f"{key} is NaN or missing in every epoch")
                ev.setdefault("never_finite", []).append(key)
            continue
        first_ok = int(np.flatnonzero(np.isfinite(y))[0])
        nonfinite = [i for i in range(first_ok, c.n) if not np.isfinite(y[i])]
        if nonfinite:
            i = nonfinite[0]
            bad.append(f"{key} is {fmt(y[i])} from epoch {c.e(i)}")
            ev.setdefault("non_finite", {})[key] = c.e(i)
    loss = c.cur.get("train/loss")
    if loss is not None and np.isfinite(loss).sum() >= 3:
        ok = np.flatnonzero(np.isfinite(loss))
        lo, last = int(ok[np.argmin(loss[ok])]), int(ok[-1])
        if loss[last] > THRESHOLDS["blowup_factor"] * loss[lo] and loss[last] > loss[ok[0]] and loss[lo] > 0:
            bad.append(
                f"train/loss rose to {fmt(loss[last])} at epoch {c.e(last)} from a minimum of "
                f"{fmt(loss[lo])} at epoch {c.e(lo)}"
            )
            ev["blowup"] = {"min": float(loss[lo]), "min_epoch": c.e(lo), "last": float(loss[last])}
    if c.run.stop_reason == "diverged":
        bad.insert(0, "the run stopped with stop_reason 'diverged'")
    if not bad:
        return None
    return Finding(
        "divergence",
        "warning",
        f"training diverged: {'; '.join(bad)}: lower optim.lr, keep optim.grad_clip on, or train in fp32 "
        "(runtime.precision).",
        ev,
        refs=["curves", "summary"],
    )


def rule_grad_spikes(c: Context) -> Finding | None:
    gmean, gmax = c.cur.get("grad_norm_mean"), c.cur.get("grad_norm_max")
    if gmean is None or not np.isfinite(gmean).any():
        return None
    base = float(np.nanmedian(gmean))
    if not base > 0:
        return None
    peak = gmax if gmax is not None else gmean
    k = THRESHOLDS["grad_spike_factor"]
    with np.errstate(invalid="ignore"):
        spikes = np.flatnonzero(np.isfinite(peak) & (peak > k * base))  # non-finite norms: the divergence rule
    if len(spikes) == 0:
        return None
    worst = int(spikes[np.argmax(peak[spikes])])
    listed = ", ".join(str(c.e(i)) for i in spikes[:10]) + (" …" if len(spikes) > 10 else "")
    return Finding(
        "grad_norm_spikes",
        "warning",
        f"gradient-norm spikes in {len(spikes)} epoch(s) ({listed}): up to {fmt(peak[worst])} at epoch "
        f"{c.e(worst)} against a median epoch mean of {fmt(base)} ({fmt(peak[worst] / base, 3)}x; the rule fires "
        f"above {k:g}x): keep optim.grad_clip on or lower optim.lr.",
        {
            "epochs": [c.e(i) for i in spikes],
            "median_epoch_mean": base,
            "worst": float(peak[worst]),
            "worst_epoch": c.e(worst),
            "factor": k,
        },
        refs=["curves"],
    )


def rule_at_chance(c: Context, chance: dict[str, Any]) -> Finding | None:
    if c.best is None:
        return None
    maj, drawn = chance["majority_class"]["value"], chance["class_prior_draw"]["value"]
    best = float(c.val[c.best])
    margin = THRESHOLDS["chance_margin"]
    if best > max(maj, drawn) + margin:
        return None
    return Finding(
        "at_chance",
        "warning",
        f"{c.monitor} never rose above chance: its best {fmt(best)} (epoch {c.e(c.best)}) against {fmt(maj)} for "
        f"always predicting the majority class '{chance['majority_class']['class']}' and {fmt(drawn)} for drawing "
        f"classes from the {chance['priors_from'].replace('class_counts_', '')} priors, on the scored validation "
        "pixels: the model has learned nothing beyond the class frequencies.",
        {"metric": c.metric, "best": best, "majority_class": maj, "class_prior_draw": drawn, "margin": margin},
        refs=["chance", "curves"],
    )


RUN_RULES = (
    rule_divergence,
    rule_still_improving,
    rule_degradation,
    rule_overfitting,
    rule_lr_decayed_early,
    rule_low_and_close,
    rule_grad_spikes,
)
