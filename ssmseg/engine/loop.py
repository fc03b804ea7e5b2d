"""The training loop, written out: epochs of optimisation and validation, schedules, checkpoints, early
stopping, the divergence guard, exact resume and Ctrl-C."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ssmseg.config.schema import Config
from ssmseg.data.augment import augment
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.logging import RunLogger
from ssmseg.engine.optim import EpochSchedule
from ssmseg.engine.precision import autocast
from ssmseg.engine.runtime import Runtime, all_reduce_, seed_everything
from ssmseg.errors import SsmsegError
from ssmseg.progress import progress_bar
from ssmseg.tasks.segmentation.metrics import confusion, metrics_from_confusion
from ssmseg.tasks.segmentation.visual import panel


class DivergedError(SsmsegError):
    """The loss became NaN or exploded (exit 1); the last good checkpoint is kept."""


@dataclass
class FitState:
    """Everything the loop needs besides the data; ``meta`` goes into every checkpoint as it is."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: EpochSchedule
    scaler: torch.amp.GradScaler
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    num_classes: int
    ignore_index: int
    classes: list[str]
    meta: dict[str, Any]
    start_epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"value": None, "epoch": None})
    history: list[dict[str, Any]] = field(default_factory=list)


def checkpoint_state(st: FitState, epoch: int) -> dict[str, Any]:
    model = st.model.module if isinstance(st.model, DistributedDataParallel) else st.model
    return {
        **st.meta,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": st.optimizer.state_dict(),
        "schedule": st.schedule.state_dict(),
        "scaler": st.scaler.state_dict(),
        "rng": ckpt.rng_state(),
        "epoch": epoch,
        "best": dict(st.best),
        "history": copy.deepcopy(st.history),
    }


def restore(st: FitState, state: dict[str, Any]) -> None:
    model = st.model.module if isinstance(st.model, DistributedDataParallel) else st.model
    model.load_state_dict(state["model"])
    st.optimizer.load_state_dict(state["optimizer"])
    st.schedule.load_state_dict(state["schedule"])
    st.scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"])
    st.start_epoch, st.best, st.history = state["epoch"] + 1, dict(state["best"]), list(state["history"])


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def run_epoch(st: FitState, loader, cfg: Config, rt: Runtime, epoch: int, train: bool) -> dict[str, float]:
    """One pass; returns loss and metrics reduced over every rank."""
    model = st.model
    model.train(train)
    cm = torch.zeros(st.num_classes, st.num_classes, dtype=torch.int64, device=rt.device)
    totals = torch.zeros(2, dtype=torch.float64, device=rt.device)  # loss sum, samples
    gen = torch.Generator(device=rt.device).manual_seed(cfg.runtime.seed * 100_003 + epoch * 101 + rt.rank)
    accumulate = cfg.optim.accumulate if train else 1
    label = f"epoch {epoch + 1}/{cfg.train.epochs} {'train' if train else 'val'}"
    with progress_bar(label, len(loader)) as advance, torch.set_grad_enabled(train):
        for step, batch in enumerate(loader):
            x = batch["image"].to(rt.device, non_blocking=True)
            y = batch["mask"].to(rt.device, non_blocking=True)
            if train:
                x, y = augment(x, y, cfg.augment, gen, st.ignore_index)
            with autocast(rt.device, cfg.runtime.precision):
                logits = model(x)
                loss = st.loss_fn(logits, y)
            if not torch.isfinite(loss) or (train and loss.item() > 1e4):
                raise DivergedError(
                    f"training diverged at epoch {epoch + 1}, step {step + 1} (loss {loss.item():.3g}); the last "
                    "good checkpoint is kept; lower optim.lr or set optim.grad_clip"
                )
            if train:
                st.scaler.scale(loss / accumulate).backward()
                if (step + 1) % accumulate == 0 or step + 1 == len(loader):
                    st.scaler.unscale_(st.optimizer)
                    if cfg.optim.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                    st.scaler.step(st.optimizer)
                    st.scaler.update()
                    st.optimizer.zero_grad(set_to_none=True)
            totals += torch.tensor([loss.item() * len(x), len(x)], dtype=torch.float64, device=rt.device)
            cm += confusion(logits.argmax(1), y, st.num_classes, st.ignore_index)
            advance()
    all_reduce_(totals, rt)
    all_reduce_(cm, rt)
    m = metrics_from_confusion(cm.cpu().numpy(), st.classes)
    return {"loss": float(totals[0] / max(totals[1], 1)), "samples": int(totals[1]), "oa": m["oa"],
            "miou": m["miou"], "mean_f1": m["mean_f1"], "kappa": m["kappa"]}  # fmt: skip


def fit(st: FitState, train_loader, val_loader, cfg: Config, rt: Runtime, run_dir: Path) -> dict[str, Any]:
    """Train from ``st.start_epoch`` to the end (or early stop); returns {"stop_reason", "best"}."""
    logger = RunLogger(run_dir, rt.is_main, len(st.history))
    ck_dir = run_dir / "checkpoints"
    tc = cfg.train
    stop_reason, pending = "completed", None
    since_best = 0 if st.best["epoch"] is None else len(st.history) - 1 - _index_of(st.history, st.best["epoch"])
    try:
        for epoch in range(st.start_epoch, tc.epochs):
            # Every random draw of an epoch depends only on (seed, epoch): resume replays it exactly.
            seed_everything(cfg.runtime.seed + 7919 * epoch + rt.rank)
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            lr = st.schedule.apply(st.optimizer, epoch)
            start = time.perf_counter()
            tr = run_epoch(st, train_loader, cfg, rt, epoch, train=True)
            seconds = time.perf_counter() - start
            va = run_epoch(st, val_loader, cfg, rt, epoch, train=False)
            rec = {"epoch": epoch + 1, "lr": lr, **{f"train/{k}": v for k, v in tr.items() if k != "samples"},
                   **{f"val/{k}": v for k, v in va.items() if k != "samples"}, "seconds": round(seconds, 3),
                   "samples_per_s": round(tr["samples"] / max(seconds, 1e-9), 2)}  # fmt: skip
            if tc.monitor not in rec:
                raise SsmsegError(f"train.monitor '{tc.monitor}' is not recorded; use one of {', '.join(rec)}")
            value = rec[tc.monitor]
            st.schedule.step(value)
            st.history.append(rec)
            improved = _improved(value, st.best["value"], tc.mode, tc.min_delta)
            if improved:
                st.best = {"value": value, "epoch": epoch + 1}
                since_best = 0
            else:
                since_best += 1
            logger.write_history(st.history, {"best": st.best, "monitor": tc.monitor})
            logger.scalars(rec)
            if rt.is_main:
                _log_predictions(st, val_loader, cfg, rt, logger, epoch + 1)
            if rt.is_main:
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
            logger.write_history(st.history, {"best": st.best, "monitor": tc.monitor, "stop_reason": stop_reason})
            if pending is not None and stop_reason != "interrupted":
                ckpt.save(pending, ck_dir / "latest.pt")
        logger.close()
    return {"stop_reason": stop_reason, "best": st.best}


def _log_predictions(st: FitState, loader, cfg: Config, rt: Runtime, logger: RunLogger, epoch: int) -> None:
    """A few validation panels (input, truth, prediction) in TensorBoard."""
    batch = next(iter(loader), None)
    if batch is None:
        return
    st.model.eval()
    model = st.model.module if isinstance(st.model, DistributedDataParallel) else st.model
    with torch.no_grad(), autocast(rt.device, cfg.runtime.precision):
        pred = model(batch["image"][:3].to(rt.device)).argmax(1)
    for i in range(len(pred)):
        image = panel(batch["image"][i], batch["mask"][i], pred[i], st.meta["palette"], st.ignore_index)
        logger.image(f"val/prediction_{i}", image, epoch)


def _index_of(history: list[dict[str, Any]], epoch: int) -> int:
    return next((i for i, r in enumerate(history) if r["epoch"] == epoch), len(history) - 1)
