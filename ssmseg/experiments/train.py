"""``ssmseg train``: one call that builds the task, data, model and optimiser from a config and runs the
loop. Nothing here knows what the task predicts.

Before any work: settings that cannot run (a monitor that is never recorded, a run name that is a path) are
errors, and the task checks its dataset (``TaskLife.prepare``) and says which config really runs
(``config.yaml`` records it: a prepared dataset fixes the crop size and the prep settings).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset

from ssmseg import __version__, outputs
from ssmseg.config import Config, dump_config, save_config
from ssmseg.data import manifest as mf
from ssmseg.data.builtin import resolve_dataset
from ssmseg.data.datasets import describe_selection
from ssmseg.data.sampling import EpochSampler
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.ema import WeightEMA
from ssmseg.engine.loop import DivergedError, FitState, fit, restore, unwrap
from ssmseg.engine.optim import EpochSchedule, build_optimizer
from ssmseg.engine.precision import make_scaler
from ssmseg.engine.precision import resolve as resolve_precision
from ssmseg.engine.runtime import Runtime, barrier, setup_runtime, shutdown
from ssmseg.engine.task import Task, check_monitor
from ssmseg.errors import ConfigError, InputError
from ssmseg.experiments import finetune
from ssmseg.experiments import resume as resuming
from ssmseg.experiments.folders import create_run_folder
from ssmseg.models.registry import check_model_task, count_parameters
from ssmseg.progress import warn
from ssmseg.ssm import choose_backend
from ssmseg.tasks import build_task, task_class, task_life, task_of


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    stop_reason: str
    monitor: str


def check_config(cfg: Config) -> None:
    """Settings that cannot run, found before any folder is created."""
    name = cfg.runtime.name
    if name is not None and (not name.strip() or name in (".", "..") or "/" in name or os.sep in name):
        raise ConfigError(
            f"runtime.name '{name}' must be a plain folder name (no '/'); runtime.out_dir sets where run folders go"
        )
    if cfg.finetune.init is not None:  # a wrong --init is named before any data is prepared
        ckpt.resolve(cfg.finetune.init)
    cls = task_class(cfg.task.name)
    if cfg.train.monitor is not None and cls is not None:
        check_monitor(cfg.train.monitor, cls)


def cap_warmup(cfg: Config) -> Config:
    """A run shorter than its warmup (a preset shortened with --set train.epochs=2) warms up for all but its
    last epoch, with a warning; the returned config records the warmup that runs."""
    warmup, epochs = cfg.schedule.warmup_epochs, cfg.train.epochs
    if warmup < epochs:
        return cfg
    capped = epochs - 1
    warn(
        f"schedule.warmup_epochs {warmup} does not fit a {epochs}-epoch run: warming up for {capped} epoch"
        f"{'' if capped == 1 else 's'} instead (recorded in config.yaml)"
    )
    return cfg.model_copy(update={"schedule": cfg.schedule.model_copy(update={"warmup_epochs": capped})})


def for_training(cfg: Config, dataset: Path, fold: int | None = None) -> Config:
    """Check what a run needs before any work; return the config that will actually run (the task's checks
    of its dataset; a warmup longer than the run is capped)."""
    check_config(cfg)
    cfg = cap_warmup(cfg)
    manifest = mf.load(dataset)
    kind = task_of(manifest)
    if kind != cfg.task.name:
        raise InputError(
            f"'{dataset}' is a {kind} dataset but task.name is {cfg.task.name}; give a {cfg.task.name} dataset or "
            f"set task.name: {kind}"
        )
    return task_life(cfg.task.name).prepare(cfg, dataset, manifest, fold)


def default_run_dir(cfg: Config) -> Path:
    return Path(cfg.runtime.out_dir) / (cfg.runtime.name or f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def with_task_defaults(cfg: Config, task: Task) -> Config:
    """cfg with train.monitor/train.mode filled from the task and the monitor checked (exit 2)."""
    monitor, mode = cfg.train.monitor or task.monitor, cfg.train.mode or task.mode
    check_monitor(monitor, task)
    if cfg.train.monitor == monitor and cfg.train.mode == mode:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"monitor": monitor, "mode": mode})})


def validation_subset(cfg: Config, val_ds: Dataset) -> Dataset:
    """The validation set, or (``data.max_val_patches``) one fixed subset of it drawn with seed 0: the same
    items every epoch and every run of the dataset, in their original order."""
    cap = cfg.data.max_val_patches
    if cap is None or cap >= len(val_ds):
        return val_ds
    keep = np.sort(np.random.default_rng(0).choice(len(val_ds), size=cap, replace=False))
    return Subset(val_ds, keep.tolist())


def loaders(cfg: Config, task: Task, rt: Runtime) -> tuple[DataLoader, DataLoader]:
    train_ds, val_ds = task.train_set, validation_subset(cfg, task.val_set)
    weights = None
    if cfg.data.balance > 0:
        if not hasattr(task, "sample_weights"):
            raise ConfigError(
                f"data.balance applies to segmentation; the {task.name} task samples uniformly: set it to 0"
            )
        weights = task.sample_weights(cfg.data.balance)
    sampler = EpochSampler(len(train_ds), cfg.runtime.seed, rt.rank, rt.world_size, True, cfg.data.max_patches, weights)
    val_sampler = EpochSampler(len(val_ds), 0, rt.rank, rt.world_size, shuffle=False)
    kw = {
        "batch_size": cfg.data.batch_size,
        "num_workers": cfg.data.num_workers,
        "pin_memory": rt.device.type == "cuda",
        "persistent_workers": cfg.data.num_workers > 0,
    }
    return DataLoader(train_ds, sampler=sampler, **kw), DataLoader(val_ds, sampler=val_sampler, **kw)


def train(
    cfg: Config, resume: Path | None = None, force: bool = False, fold: int | None = None, run_dir: Path | None = None
) -> RunResult:
    """Train (or resume) one run; returns its folder, history and best epoch."""
    rt = setup_runtime(cfg.runtime)
    try:
        run_dir = Path(resume) if resume is not None else (run_dir or default_run_dir(cfg))
        builtin = task_life(cfg.task.name).builtin_dataset
        if rt.is_main:
            dataset = resolve_dataset(cfg, builtin)  # prepares the built-in dataset on first use
        barrier(rt)
        dataset = resolve_dataset(cfg, builtin)
        cfg = for_training(cfg, dataset, fold)  # refuse what cannot train; record what will run
        check_model_task(cfg.model.name, cfg.task.name)
        task = build_task(cfg, dataset, fold)
        cfg = with_task_defaults(cfg, task)
        state = resuming.resume_state(run_dir, cfg, force) if resume is not None else None
        train_loader, val_loader = loaders(cfg, task, rt)
        model = task.build_model()
        tuned = finetune.prepare(model, cfg, task.checkpoint_meta(), state)  # --init: matching weights, frozen parts
        model = model.to(rt.device)
        parameters = count_parameters(model)
        if rt.distributed:
            # A linear phase (model.linear_epochs) runs the spectral head alone: the spatial path's parameters get
            # no gradient in those steps, which DDP must be told about or its reduction fails.
            model = DistributedDataParallel(
                model,
                device_ids=[rt.device.index] if rt.device.type == "cuda" else None,
                find_unused_parameters=bool(cfg.model.linear_epochs),
            )
        backend = choose_backend(rt.device)[0]
        versions = {"ssmseg": __version__, "torch": str(torch.__version__)}
        meta = {
            "task": task.name,
            "config": yaml.safe_load(dump_config(cfg)),
            **task.checkpoint_meta(),
            "versions": versions,
            "scan_backend": backend,
            "selected_on": describe_selection(cfg.train.select, fold),
            **({"finetune": tuned} if tuned else {}),
        }
        info = {
            "model": cfg.model.name,
            "parameters": parameters,
            "device": str(rt.device),
            "scan_backend": backend,
            "world_size": rt.world_size,
            "threads": rt.threads,
            "threads_why": rt.threads_why,
            "precision": resolve_precision(rt.device, cfg.runtime.precision),
            "epochs_planned": cfg.train.epochs,
            "schedule": cfg.schedule.name,
            "warmup_epochs": cfg.schedule.warmup_epochs,
            "train_items": len(task.train_set),
            "val_items": len(val_loader.dataset),
            "val_items_total": len(task.val_set),
            "selected_on": describe_selection(cfg.train.select, fold),
            **task.run_info(val_loader.dataset.indices if isinstance(val_loader.dataset, Subset) else None),
            **({"finetune": tuned} if tuned else {}),
        }
        head = getattr(unwrap(model), "spectral", None)  # the spectral head (SpectralPath): model.spectral_lr_scale
        optimizer = build_optimizer(
            cfg.optim, model, {head: cfg.model.spectral_lr_scale} if isinstance(head, torch.nn.Module) else None
        )
        schedule = EpochSchedule(
            cfg.schedule, cfg.optim.lr, cfg.train.epochs, cfg.train.mode, cfg.train.extend_schedule
        )
        scaler = make_scaler(rt.device, cfg.runtime.precision)
        ema = None if cfg.train.ema is None else WeightEMA(unwrap(model), cfg.train.ema)
        st = FitState(task, model, optimizer, schedule, scaler, meta, info, ema=ema)
        if state is not None:
            restore(st, state)
        if rt.is_main:
            if resume is None:  # created exclusively: a new name when it exists (a cv fold: exactly that name)
                run_dir, cfg = create_run_folder(run_dir, cfg, exact=fold is not None)
            save_config(cfg, run_dir / "config.yaml")
        run_dir = outputs.broadcast(run_dir, rt)
        try:
            result = fit(st, train_loader, val_loader, cfg, rt, run_dir)
        except KeyboardInterrupt:
            raise resuming.stopped(run_dir, remove=rt.is_main and resume is None) from None
        except DivergedError as exc:  # the folder stays: its history shows the run up to the failure
            raise DivergedError(resuming.diverged(str(exc), run_dir)) from None
        except Exception:
            resuming.drop_unresumable(run_dir, fresh=rt.is_main and resume is None)  # nothing half-made is left
            raise
        return RunResult(run_dir, st.history, result["best"], result["stop_reason"], cfg.train.monitor)
    finally:
        shutdown(rt)
