"""Fine-tuning (``finetune.*``, ``ssmseg train --init RUN``): a new run whose model starts from the matching
weights of a trained one, with named parts frozen.

Every tensor whose name and shape match is loaded; each other one is listed with the reason (a new classifier
head because the classes differ, the first layer reinitialised because the bands differ, a shape or a name the
checkpoint lacks). Parts are parameter-name prefixes per model, and ``ssm`` is every SS2D/Mamba block found
by type. What was loaded, skipped and frozen goes to the checkpoints and to history.json's ``run`` header.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ssmseg.config import Config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError
from ssmseg.models.layers.conv import SS2DBlock
from ssmseg.progress import info, warn
from ssmseg.ssm.mamba import Mamba
from ssmseg.ssm.ss2d import SS2D
from ssmseg.tasks import task_of


@dataclass(frozen=True)
class Layout:
    """Where a model's parts are: parameter-name prefixes (``ssm`` is found by module type)."""

    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    first: tuple[str, ...] = ()  # the layer that reads the bands
    classifier: tuple[str, ...] = ()  # the layer that writes the classes


LAYOUTS = {
    "cmt_unet": Layout(
        {
            "spectral": ("stem.0.",),
            "encoder": ("stem.", "encoder."),
            "decoder": ("wavelet.", "msa.", "up.", "win."),
            "head": ("head.",),
        },
        ("stem.0.",),
        ("head.1.",),
    ),
    "ssmu_net": Layout(
        {
            "spectral": ("sinc.", "embed."),
            "encoder": ("enc.",),
            "decoder": ("up.",),
            "head": ("head.", "spectral.", "gate"),
        },
        ("embed.0.", "spectral."),
        ("head.", "spectral."),
    ),
    "unet": Layout(
        {"spectral": ("stem.0.",), "encoder": ("stem.", "down."), "decoder": ("up.",), "head": ("head.",)},
        ("stem.0.",),
        ("head.",),
    ),
    "unet_spectral": Layout(
        {
            "spectral": ("unet.stem.0.",),
            "encoder": ("unet.stem.", "unet.down."),
            "decoder": ("unet.up.",),
            "head": ("unet.head.", "spectral.", "gate"),
        },
        ("unet.stem.0.", "spectral."),
        ("unet.head.", "spectral."),
    ),
    "micro_segformer": Layout(
        {
            "spectral": ("embeds.0.0.",),
            "encoder": ("embeds.", "blocks."),
            "decoder": ("proj.", "fuse."),
            "head": ("head.",),
        },
        ("embeds.0.0.",),
        ("head.",),
    ),
}
SSM_TYPES = (SS2DBlock, SS2D, Mamba)
# Buffers that count training (SpectralPath's samples seen and linear-phase length): never carried by --init.
PROGRESS = ("seen", "linear_until")


def part_parameters(model: nn.Module, name: str) -> dict[str, set[str]]:
    """{part: parameter names} of a model; encoder and decoder exclude the SS2D/Mamba blocks inside them."""
    ssm = {
        f"{prefix}.{n}" if prefix else n
        for prefix, mod in model.named_modules()
        if isinstance(mod, SSM_TYPES)
        for n, _ in mod.named_parameters()
    }
    out = {"ssm": ssm} if ssm else {}
    for part, prefixes in LAYOUTS.get(name, Layout()).parts.items():
        names = {n for n, _ in model.named_parameters() if n.startswith(prefixes)}
        out[part] = names if part in ("spectral", "head") else names - ssm
    return {part: names for part, names in out.items() if names}


@dataclass
class InitReport:
    """What ``load_init`` did, JSON-able through ``as_dict``."""

    source: dict[str, Any]
    loaded: list[str]
    skipped: dict[str, str]  # key -> why
    unused: list[str]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.source,
            "loaded": self.loaded,
            "skipped": self.skipped,
            "unused": self.unused,
            "warnings": self.warnings,
        }


def _differs(a: Any, b: Any) -> bool:
    return a is not None and b is not None and list(a) != list(b)


def load_init(model: nn.Module, cfg: Config, meta: dict[str, Any]) -> InitReport:
    """Load the matching weights of ``cfg.finetune.init`` into ``model`` (built for this run's data, whose
    checkpoint metadata is ``meta``)."""
    path = ckpt.resolve(cfg.finetune.init)
    state = ckpt.load(path)
    task = task_of(state)
    if task != cfg.task.name:
        raise InputError(
            f"finetune.init '{path}' is a {task} model; this run is {cfg.task.name}: start from a {cfg.task.name} run"
        )
    layout = LAYOUTS.get(cfg.model.name, Layout())
    bands = (state.get("in_channels"), meta.get("in_channels"))
    new_bands = bands[0] != bands[1] or _differs(state.get("band_names"), meta.get("band_names"))
    classes = (state.get("classes"), meta.get("classes"))
    new_classes = _differs(*classes)
    source, mine = state["model"], model.state_dict()
    loaded, skipped = [], {}
    for key, value in mine.items():
        if new_classes and key.startswith(layout.classifier):
            skipped[key] = (
                f"new classifier head: {len(classes[0])} classes {classes[0]} -> {len(classes[1])} {classes[1]}"
            )
        elif new_bands and key.startswith(layout.first):
            skipped[key] = f"first layer reinitialised: {bands[0]} bands -> {bands[1]}" + (
                " (band order differs)" if bands[0] == bands[1] else ""
            )
        elif key in PROGRESS:
            skipped[key] = "training progress of the source run, not a weight (this run counts its own)"
        elif key not in source:
            skipped[key] = "not in the checkpoint"
        elif tuple(source[key].shape) != tuple(value.shape):
            skipped[key] = f"shape {tuple(source[key].shape)} in the checkpoint, {tuple(value.shape)} here"
        else:
            loaded.append(key)
    if not loaded:
        raise InputError(
            f"finetune.init '{path}' ({state.get('model_name', '?')}) has no weight that fits "
            f"{cfg.model.name} as configured; start from a run of the same model"
        )
    model.load_state_dict({k: source[k] for k in loaded}, strict=False)
    epoch = state.get("epoch")
    src = {
        "init": str(cfg.finetune.init),
        "checkpoint": str(path),
        "epoch": None if epoch is None else int(epoch) + 1,
        "model": state.get("model_name"),
        "dataset": state.get("dataset"),
    }
    report = InitReport(src, loaded, skipped, sorted(set(source) - set(mine)))
    if new_bands and layout.first:
        report.warnings.append(
            f"the first layer ({layout.first[0].rstrip('.')}) is reinitialised: the checkpoint "
            f"reads {bands[0]} bands, this data has {bands[1]}" + (" in another order" if bands[0] == bands[1] else "")
        )
    return report


def freeze(model: nn.Module, cfg: Config, skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Fix the parameters of ``cfg.finetune.freeze``; returns what was frozen and what still trains."""
    parts = part_parameters(model, cfg.model.name)
    wanted = cfg.finetune.freeze
    for part in wanted:
        if part not in parts:
            raise ConfigError(
                f"finetune.freeze: {cfg.model.name} has no '{part}' part; its parts: "
                f"{', '.join(sorted(parts)) or 'none'}"
            )
    frozen, fresh = set(), set(skipped or {})
    for part in wanted:
        if parts[part] <= fresh:
            raise ConfigError(
                f"finetune.freeze: {cfg.model.name}'s {part} is freshly initialised "
                f"({skipped[min(parts[part])]}); a fixed random {part} learns nothing: take it out "
                "of finetune.freeze"
            )
        frozen |= parts[part]
    kept = sorted(frozen & fresh)  # a reinitialised first layer inside a frozen encoder still has to learn
    frozen -= fresh
    counts = Counter()
    for name, p in model.named_parameters():
        if name in frozen:  # only ever off: a head fixed by model.spectral_train: false stays fixed
            p.requires_grad_(False)
        counts["trainable" if p.requires_grad else "frozen"] += p.numel()
    if not counts["trainable"]:
        raise ConfigError(f"finetune.freeze {wanted} leaves nothing to train; freeze fewer parts")
    return {
        "frozen": list(wanted),
        "frozen_parameters": counts["frozen"],
        "trainable_parameters": counts["trainable"],
        "trained_although_in_a_frozen_part": kept,
    }


def _groups(keys: list[str]) -> str:
    top = Counter(k.split(".")[0] for k in keys)
    return ", ".join(f"{name} ({n})" for name, n in top.items())


def prepare(
    model: nn.Module, cfg: Config, meta: dict[str, Any], resumed: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Load ``finetune.init`` (not when resuming: the run's own weights follow) and freeze; print and return the
    record for the checkpoints and history.json (None when the run is not a fine-tune)."""
    ft = cfg.finetune
    if ft.init is None:
        return None
    if resumed is not None:
        record = dict(resumed.get("finetune") or {"init": str(ft.init)})
        return {**record, **freeze(model, cfg, record.get("skipped"))}
    report = load_init(model, cfg, meta)
    record = {**report.as_dict(), **freeze(model, cfg, report.skipped)}
    src, n = report.source, len(report.loaded)
    info(
        f"fine-tuning from {src['checkpoint']} (epoch {src['epoch']}): loaded {n} of {n + len(report.skipped)} "
        f"tensors: {_groups(report.loaded)}"
    )
    reasons = Counter(report.skipped.values())
    for reason, n in reasons.items():
        keys = [k for k, r in report.skipped.items() if r == reason]
        info(f"  not loaded, {reason}: {', '.join(keys[:4])}{f' and {n - 4} more' if n > 4 else ''}")
    if report.unused:
        info(
            f"  in the checkpoint but not in this model: {', '.join(report.unused[:4])}"
            f"{f' and {len(report.unused) - 4} more' if len(report.unused) > 4 else ''}"
        )
    if ft.freeze:
        kept = record["trained_although_in_a_frozen_part"]
        info(
            f"  frozen: {', '.join(ft.freeze)} ({record['frozen_parameters']:,} parameters); "
            f"{record['trainable_parameters']:,} train with optim.lr {cfg.optim.lr:g}"
            + (f" (including the new {', '.join(kept)})" if kept else "")
        )
    for note in report.warnings:
        warn(note)
    return record
