"""The training loop, written out: epochs of optimisation and validation, schedules, checkpoints, early
stopping, the divergence guard, exact resume and Ctrl-C. It trains any ``Task`` (``engine/task.py``) and
knows nothing about classes, masks or fields."""

from __future__ import annotations

import contextlib
import copy
import math
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssmseg.config import save_config
from ssmseg.config.schema import Config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.ema import WeightEMA, trained_weights
from ssmseg.engine.logging import RunLogger
from ssmseg.engine.optim import LENGTH_DEPENDENT, EpochSchedule
from ssmseg.engine.precision import autocast
from ssmseg.engine.runtime import Runtime, all_reduce_, announce_threads, seed_everything
from ssmseg.engine.task import StepOut, Task
from ssmseg.errors import SsmsegError
from ssmseg.progress import epoch_line, info, progress_bar

# Steps between divergence checks: each check is the training step's only device-to-host sync.
CHECK_EVERY = 16
HISTORY_FORMAT = 2
clock = time.perf_counter  # the wall clock of train.time_limit (a test drives its own)


class DivergedError(SsmsegError):
    """The loss became NaN or exploded (exit 1); the last good checkpoint is kept."""


@dataclass
class FitState:
    """Everything the loop needs besides the data; ``meta`` goes into every checkpoint as it is, ``info``
    into history.json's ``run`` header; ``ema`` (``train.ema``) the moving average that validation and the
    checkpoints' ``model`` use."""

    task: Task
    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: EpochSchedule
    scaler: torch.amp.GradScaler
    meta: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "epoch": None})
    history: list[dict[str, Any]] = field(default_factory=list)
    ema: WeightEMA | None = None


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def checkpoint_state(st: FitState, epoch: int) -> dict[str, Any]:
    """``model``: the weights validation scored (the average with ``train.ema``; then ``ema`` holds the
    optimiser's own weights for resume)."""
    weights = {k: v.detach().cpu() for k, v in unwrap(st.model).state_dict().items()}
    average = {} if st.ema is None else {"model": st.ema.averaged(), "ema": st.ema.checkpoint(weights)}
    return {
        **st.meta,
        "model": weights,
        **average,
        "optimizer": st.optimizer.state_dict(),
        "schedule": st.schedule.state_dict(),
        "scaler": st.scaler.state_dict(),
        "rng": ckpt.rng_state(),
        "epoch": epoch,
        "best": dict(st.best),
        "history": copy.deepcopy(st.history),
    }


def restore(st: FitState, state: dict[str, Any]) -> None:
    unwrap(st.model).load_state_dict(trained_weights(state))
    if st.ema is not None:
        st.ema.load(state)
    st.optimizer.load_state_dict(state["optimizer"])
    st.schedule.load_state_dict(state["schedule"])
    st.scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"])
    st.start_epoch, st.best, st.history = state["epoch"] + 1, dict(state["best"]), list(state["history"])
    if "epochs" not in state["schedule"]:  # a checkpoint from before schedule stages: its config's total
        trained = ((state.get("config") or {}).get("train") or {}).get("epochs")
        st.schedule.saved_epochs = int(trained) if isinstance(trained, int) else st.schedule.saved_epochs
    change = st.schedule.resumed(st.start_epoch)
    if change:
        info(change)


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated CUDA memory on a GPU; the process's peak resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _check(watch: torch.Tensor, epoch: int, first: int, last: int, train: bool) -> None:
    """One host sync: the worst loss since the previous check (inf when any was NaN/inf)."""
    worst = float(watch)
    if not math.isfinite(worst) or (train and worst > 1e4):
        where = f"step {last}" if first == last else f"steps {first}-{last}"
        shown = "NaN or inf" if not math.isfinite(worst) else f"{worst:.3g}"
        raise DivergedError(
            f"{'training' if train else 'validation'} diverged at epoch {epoch + 1}, {where} (loss {shown}); the "
            "last good checkpoint is kept; lower optim.lr or set optim.grad_clip"
        )


def run_epoch(st: FitState, loader, cfg: Config, rt: Runtime, epoch: int, train: bool) -> dict[str, float]:
    """One pass; returns loss and the task's metrics reduced over every rank (plus gradient norms)."""
    model, task = st.model, st.task
    model.train(train)
    totals = torch.zeros(2, dtype=torch.float64, device=rt.device)  # loss sum, samples
    grads = torch.zeros(2, dtype=torch.float64, device=rt.device)  # sum and max of pre-clip norms
    n_grads = 0
    stats: dict[str, torch.Tensor] = {}
    watch = torch.zeros((), device=rt.device)
    gen = torch.Generator(device=rt.device).manual_seed(cfg.runtime.seed * 100_003 + epoch * 101 + rt.rank)
    accumulate = cfg.optim.accumulate if train else 1
    clip = cfg.optim.grad_clip or math.inf
    label = f"epoch {epoch + 1}/{cfg.train.epochs} {'train' if train else 'val'}"
    checked = 0
    with progress_bar(label, len(loader)) as advance, torch.set_grad_enabled(train):
        for step, batch in enumerate(loader):
            batch = _to_device(batch, rt.device)
            with autocast(rt.device, cfg.runtime.precision):
                out: StepOut = task.training_step(model, batch, gen) if train else task.validation_step(model, batch)
            if train:
                st.scaler.scale(out.loss / accumulate).backward()
                if (step + 1) % accumulate == 0 or step + 1 == len(loader):
                    st.scaler.unscale_(st.optimizer)
                    norm = nn.utils.clip_grad_norm_(model.parameters(), clip).detach().double()
                    grads[0] += norm
                    grads[1] = torch.maximum(grads[1], norm)
                    n_grads += 1
                    st.scaler.step(st.optimizer)
                    st.scaler.update()
                    if st.ema is not None:
                        st.ema.update(unwrap(model))
                    st.optimizer.zero_grad(set_to_none=True)
            loss = out.loss.detach()
            watch = torch.maximum(watch, torch.where(torch.isfinite(loss), loss.float(), math.inf))
            totals += torch.stack(
                [loss.double() * out.count, torch.tensor(float(out.count), device=rt.device, dtype=torch.float64)]
            )
            for key, value in out.stats.items():
                stats[key] = stats[key] + value if key in stats else value.clone()
            if (step + 1) % CHECK_EVERY == 0 or step + 1 == len(loader):
                _check(watch, epoch, checked + 1, step + 1, train)
                checked = step + 1
            advance()
    all_reduce_(totals, rt)
    for key in sorted(stats):
        all_reduce_(stats[key], rt)
    rec = {"loss": float(totals[0] / max(float(totals[1]), 1)), "samples": int(totals[1]), **task.metrics(stats)}
    if train:
        rec["grad_norm_mean"] = float(grads[0]) / max(n_grads, 1)
        rec["grad_norm_max"] = float(grads[1])
    return rec


def _header(st: FitState, cfg: Config, stop_reason: str) -> dict[str, Any]:
    return {
        "format_version": HISTORY_FORMAT,
        "task": st.task.name,
        "monitor": cfg.train.monitor,
        "mode": cfg.train.mode,
        "min_delta": cfg.train.min_delta,
        "select": cfg.train.select,
        "ema": cfg.train.ema,
        "metric_names": list(st.task.metric_names),
        "best": st.best,
        "stop_reason": stop_reason,
        "schedule": st.schedule.record(),
        "run": st.info,
    }


def _slowest(seconds: float, rt: Runtime) -> float:
    """The largest of a time over ranks, so that every rank takes the same decision from it."""
    if not rt.distributed:
        return seconds
    t = torch.tensor([seconds], dtype=torch.float64, device=rt.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t)


def fit_epoch(cfg: Config) -> int:
    """0-based epoch after which ``train.fit_schedule_to_time_limit`` times the run: the first one, or the first
    after ``model.linear_epochs`` (a linear phase runs the spectral path alone, several times faster than the
    epochs after it, so its pace would fit too many epochs)."""
    return max(0, min(cfg.model.linear_epochs, cfg.train.epochs - 1))


def _fit_to_time_limit(
    st: FitState, cfg: Config, done: int, elapsed: float, epoch_seconds: float, run_dir: Path, rt: Runtime
) -> Config:
    """``train.fit_schedule_to_time_limit`` after epoch ``done`` (1-based, :func:`fit_epoch`) of a new run:
    train.epochs lowered to ``done`` plus what fits in the rest of the limit at this epoch's pace, so the schedule
    ends instead of being cut; config.yaml, the checkpoints' config and history.json record the fitted count
    (what ran)."""
    tc = cfg.train
    left = max(0.0, tc.time_limit * 60 - elapsed)
    fitted = max(done, min(tc.epochs, done + math.floor(left / max(epoch_seconds, 1e-9))))
    if fitted >= tc.epochs:
        info(f"train.time_limit {tc.time_limit:g} min fits all {tc.epochs} epochs ({epoch_seconds:.1f} s each)")
        return cfg
    why = {
        "why": "train.fit_schedule_to_time_limit",
        "time_limit_minutes": tc.time_limit,
        "epoch_seconds": round(epoch_seconds, 3),
        "timed_epoch": done,
    }
    st.schedule.fit(fitted, done, why)
    cfg = cfg.model_copy(update={"train": tc.model_copy(update={"epochs": fitted})})
    st.meta["config"]["train"]["epochs"] = fitted
    st.info["epochs_planned"] = fitted
    if rt.is_main:
        save_config(cfg, run_dir / "config.yaml")
    info(
        f"train.time_limit {tc.time_limit:g} min at {epoch_seconds:.1f} s per epoch: the {cfg.schedule.name} "
        f"schedule is fitted to {fitted} epochs (of {tc.epochs}); config.yaml records "
        f"train.epochs={fitted}"
    )
    return cfg


def fit(st: FitState, train_loader, val_loader, cfg: Config, rt: Runtime, run_dir: Path) -> dict[str, Any]:
    """Train from ``st.start_epoch`` to the end (or early stop); returns {"stop_reason", "best"}."""
    tc = cfg.train
    if st.start_epoch >= tc.epochs:  # a finished run: nothing to do, nothing written
        return {"stop_reason": "already complete", "best": st.best}
    announce_threads(rt)
    logger = RunLogger(run_dir, rt.is_main, len(st.history))
    ck_dir = run_dir / "checkpoints"
    stop_reason, pending = "completed", None
    since_best = 0 if st.best["epoch"] is None else len(st.history) - 1 - _index_of(st.history, st.best["epoch"])
    began, first = clock(), st.start_epoch
    fitting = tc.time_limit is not None and tc.fit_schedule_to_time_limit and first == 0
    try:
        epoch = first
        while epoch < tc.epochs:
            epoch_began = clock()
            # Every random draw of an epoch depends only on (seed, epoch): resume replays it exactly.
            seed_everything(cfg.runtime.seed + 7919 * epoch + rt.rank)
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            lr = st.schedule.apply(st.optimizer, epoch)
            start = time.perf_counter()
            tr = run_epoch(st, train_loader, cfg, rt, epoch, train=True)
            seconds = time.perf_counter() - start
            with averaged(st):
                va = run_epoch(st, val_loader, cfg, rt, epoch, train=False)
            val_seconds = time.perf_counter() - start - seconds
            grad = {k: tr.pop(k) for k in ("grad_norm_mean", "grad_norm_max")}
            rec = {
                "epoch": epoch + 1,
                "lr": lr,
                **{f"train/{k}": v for k, v in tr.items() if k != "samples"},
                **{f"val/{k}": v for k, v in va.items() if k != "samples"},
                "seconds": round(seconds, 3),
                "val_seconds": round(val_seconds, 3),
                "samples_per_s": round(tr["samples"] / max(seconds, 1e-9), 2),
                **grad,
                "peak_memory_mb": round(peak_memory_mb(rt.device), 1),
            }
            value = rec[tc.monitor]
            st.schedule.step(value)
            st.history.append(rec)
            # select last: every epoch replaces best.pt (patience and min_delta are refused with it by the schema)
            improved = tc.select == "last" or _improved(value, st.best["value"], tc.mode, tc.min_delta)
            if improved:
                st.best = {"value": value, "epoch": epoch + 1}
                since_best = 0
            else:
                since_best += 1
            logger.write_history(st.history, _header(st, cfg, "running"))
            logger.scalars(rec)
            if rt.is_main:
                _log_examples(st, val_loader, cfg, rt, logger, epoch + 1)
                epoch_line(rec, tc.epochs, improved)
                state = checkpoint_state(st, epoch)
                if improved:
                    ckpt.save(state, ck_dir / "best.pt")
                if (epoch + 1) % tc.save_interval == 0 or epoch + 1 == tc.epochs:
                    ckpt.save(state, ck_dir / "latest.pt")
                    pending = None
                else:
                    pending = state
            if tc.patience is not None and since_best >= tc.patience:
                stop_reason = f"early stop: {tc.monitor} did not improve for {tc.patience} epochs"
                break
            if fitting and epoch == fit_epoch(cfg) and cfg.schedule.name in LENGTH_DEPENDENT:
                pace = _slowest(clock() - epoch_began, rt)  # the whole epoch: training, validation, checkpoints
                cfg = _fit_to_time_limit(st, cfg, epoch + 1, _slowest(clock() - began, rt), pace, run_dir, rt)
                tc = cfg.train
                if rt.is_main:  # the checkpoints of the timed epoch record the fitted schedule too
                    state = checkpoint_state(st, epoch)
                    ckpt.save(state, ck_dir / "latest.pt")
                    if improved:
                        ckpt.save(state, ck_dir / "best.pt")
                    pending = None
                logger.write_history(st.history, _header(st, cfg, "running"))
            epoch += 1
            elapsed = _slowest(clock() - began, rt) if tc.time_limit is not None else 0.0
            if tc.time_limit is not None and elapsed >= tc.time_limit * 60 and epoch < tc.epochs:
                stop_reason = "time_limit"
                info(
                    f"train.time_limit {tc.time_limit:g} min reached after epoch {epoch} of {tc.epochs} "
                    f"({elapsed / 60:.1f} min); continue with: ssmseg train --resume {run_dir}"
                )
                break
    except DivergedError:
        stop_reason = "diverged"
        raise
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        if pending is not None and rt.is_main:
            ckpt.save(pending, ck_dir / "latest.pt")
        raise
    finally:
        if rt.is_main and st.history:
            logger.write_history(st.history, _header(st, cfg, stop_reason))
            if pending is not None and stop_reason != "interrupted":
                ckpt.save(pending, ck_dir / "latest.pt")
        logger.close()
    return {"stop_reason": stop_reason, "best": st.best}


def _log_examples(st: FitState, loader, cfg: Config, rt: Runtime, logger: RunLogger, epoch: int) -> None:
    """The task's example images of the first validation batch, in TensorBoard."""
    batch = next(iter(loader), None)
    if batch is None:
        return
    st.model.eval()
    with averaged(st), torch.no_grad(), autocast(rt.device, cfg.runtime.precision):
        images = st.task.examples(unwrap(st.model), _to_device(batch, rt.device))
    for tag, image in images.items():
        logger.image(tag, image, epoch)


def averaged(st: FitState) -> contextlib.AbstractContextManager:
    """The weights validation scores: the moving average with ``train.ema``, else the model as it is."""
    return contextlib.nullcontext() if st.ema is None else st.ema.applied(unwrap(st.model))


def _index_of(history: list[dict[str, Any]], epoch: int) -> int:
    return next((i for i, r in enumerate(history) if r["epoch"] == epoch), len(history) - 1)
