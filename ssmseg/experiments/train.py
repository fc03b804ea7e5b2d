"""``ssmseg train``: one call that builds the data, model and optimiser from a config and runs the loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ssmseg import __version__, outputs
from ssmseg.config import Config, dump_config, save_config
from ssmseg.data.builtin import resolve_dataset
from ssmseg.data.datasets import PatchDataset
from ssmseg.data.sampling import EpochSampler
from ssmseg.engine import checkpoint as ckpt
from ssmseg.engine.loop import FitState, fit, restore
from ssmseg.engine.optim import EpochSchedule, build_optimizer
from ssmseg.engine.precision import make_scaler
from ssmseg.engine.runtime import Runtime, barrier, setup_runtime, shutdown
from ssmseg.errors import ConfigError, InputError
from ssmseg.experiments import guards
from ssmseg.models import build_model
from ssmseg.ssm import choose_backend
from ssmseg.tasks.segmentation.losses import build_loss, class_weights_from_counts


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]
    stop_reason: str


def default_run_dir(cfg: Config) -> Path:
    return Path(cfg.runtime.out_dir) / (cfg.runtime.name or f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")


def loaders(cfg: Config, dataset: Path, rt: Runtime, fold: int | None) -> tuple[PatchDataset, DataLoader, DataLoader]:
    train_ds, val_ds = PatchDataset(dataset, "train", fold), PatchDataset(dataset, "val", fold)
    sampler = EpochSampler(len(train_ds), cfg.runtime.seed, rt.rank, rt.world_size, True, cfg.data.max_patches)
    val_sampler = EpochSampler(len(val_ds), 0, rt.rank, rt.world_size, shuffle=False)
    kw = {"batch_size": cfg.data.batch_size, "num_workers": cfg.data.num_workers,
          "pin_memory": rt.device.type == "cuda", "persistent_workers": cfg.data.num_workers > 0}  # fmt: skip
    return train_ds, DataLoader(train_ds, sampler=sampler, **kw), DataLoader(val_ds, sampler=val_sampler, **kw)


def _train_counts(manifest: dict[str, Any], fold: int | None) -> list[int]:
    counts = manifest["class_counts"]
    if fold is None:
        return counts["train"]
    parts = [v for k, v in counts.items() if k.startswith("fold_") and k != f"fold_{fold}"]
    return [sum(c) for c in zip(*parts, strict=True)]


def train(
    cfg: Config, resume: Path | None = None, force: bool = False, fold: int | None = None, run_dir: Path | None = None
) -> RunResult:
    """Train (or resume) one run; returns its folder, history and best epoch."""
    rt = setup_runtime(cfg.runtime)
    try:
        run_dir = Path(resume) if resume is not None else (run_dir or default_run_dir(cfg))
        state = None
        if resume is not None:
            state = _resume_state(run_dir, cfg, force)
        if rt.is_main:
            dataset = resolve_dataset(cfg)  # prepares the built-in dataset on first use
        barrier(rt)
        dataset = resolve_dataset(cfg)
        cfg = guards.for_training(cfg, dataset, fold)  # refuse what cannot train; record what will run
        train_ds, train_loader, val_loader = loaders(cfg, dataset, rt, fold)
        manifest = train_ds.manifest
        model = build_model(cfg.model, train_ds.bands, train_ds.num_classes).to(rt.device)
        if rt.distributed:
            model = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
        weights = None
        if cfg.loss.class_weights == "auto":
            weights = class_weights_from_counts(_train_counts(manifest, fold))
        elif isinstance(cfg.loss.class_weights, list):
            if len(cfg.loss.class_weights) != train_ds.num_classes:
                raise ConfigError(f"loss.class_weights has {len(cfg.loss.class_weights)} values for "
                                  f"{train_ds.num_classes} classes; give one per class or 'auto'")  # fmt: skip
            weights = torch.tensor(cfg.loss.class_weights)
        meta = {
            "config": yaml.safe_load(dump_config(cfg)), "model_name": cfg.model.name, "in_channels": train_ds.bands,
            "num_classes": train_ds.num_classes, "classes": manifest["classes"], "palette": manifest["palette"],
            "ignore_index": train_ds.ignore_index, "dataset": str(dataset), "fold": fold,
            "labels": manifest["labels"], "band_names": manifest.get("band_names"),
            "class_counts_train": _train_counts(manifest, fold), "nodata": manifest["sources"][0]["image"]["nodata"],
            "normalization": {"method": manifest["normalize"], "stats_key": train_ds.stats_key,
                              "offset": train_ds.offset.ravel().tolist(), "scale": train_ds.scale.ravel().tolist()},
            "versions": {"ssmseg": __version__, "torch": str(torch.__version__)},
            "scan_backend": choose_backend(rt.device)[0],
        }  # fmt: skip
        optimizer = build_optimizer(cfg.optim, model)
        st = FitState(
            model, optimizer, EpochSchedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs, cfg.train.mode),
            make_scaler(rt.device, cfg.runtime.precision), build_loss(cfg.loss, train_ds.ignore_index, weights),
            train_ds.num_classes, train_ds.ignore_index, manifest["classes"], meta,
        )  # fmt: skip
        if state is not None:
            restore(st, state)
        if rt.is_main:
            if resume is None:  # created exclusively: a new name when it exists (a cv fold: exactly that name)
                run_dir, cfg = guards.create_run_folder(run_dir, cfg, exact=fold is not None)
            save_config(cfg, run_dir / "config.yaml")
        run_dir = outputs.broadcast(run_dir, rt)
        try:
            result = fit(st, train_loader, val_loader, cfg, rt, run_dir)
        except KeyboardInterrupt:
            raise guards.stopped(run_dir, remove=rt.is_main and resume is None) from None
        except Exception:
            guards.drop_unresumable(run_dir, fresh=rt.is_main and resume is None)  # nothing half-made is left
            raise
        return RunResult(run_dir, st.history, result["best"], result["stop_reason"])
    finally:
        shutdown(rt)


def _resume_state(run_dir: Path, cfg: Config, force: bool) -> dict[str, Any]:
    done = guards.check_resume(run_dir, cfg, force)  # the run's own config; only a real change needs --force
    if done:
        raise guards.RunFinished(done)
    latest = run_dir / "checkpoints" / "latest.pt"
    if not latest.is_file():
        raise InputError(f"'{run_dir}' has no checkpoints/latest.pt to resume from; start a new run")
    return ckpt.load(latest)
