"""Named model variants. Each entry builds from the ``model`` config section, the band count and the
class count; each has a tiny variant for tests. Unknown names list the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ssmseg.config.schema import ModelConfig
from ssmseg.errors import ConfigError
from ssmseg.models.cmt_unet import CMTUNet
from ssmseg.models.field_flow import FieldFlow
from ssmseg.models.field_unet import FieldUNet
from ssmseg.models.micro_segformer import MicroSegFormer
from ssmseg.models.ssmu_net import SSMUNet
from ssmseg.models.unet import SpectralUNet, UNet


@dataclass(frozen=True)
class Entry:
    build: Callable[[ModelConfig, int, int], nn.Module]
    tiny: dict[str, Any]
    summary: str
    task: str = "segmentation"
    classes: bool = True  # predicts classes, so needs at least one (False: values of the input's channels)
    uses: frozenset[str] = frozenset()  # model keys beyond width/depth/dropout that this model reads
    ss2d_blocks: bool = False  # has SS2D blocks (their depthwise convolution needs an odd d_conv)


# The per-pixel linear path (models/layers/spectral_path.py: ssmu_net, unet_spectral) and how it trains.
SPECTRAL = (
    "spectral_head",
    "spectral_context",
    "spectral_init",
    "spectral_train",
    "spectral_lr_scale",
    "spatial_gate",
    "linear_epochs",
)
# Keys only some models read: a value other than the default for a model that ignores it is an error.
SPECIFIC = (
    "d_state",
    "expand",
    "d_conv",
    "n_filters",
    "wavelet",
    "window",
    "encoder_weights",
    "backbone",
    "order",
    "n_fourier",
    "fourier_scale",
    "heads",
    "msa",
    "window_attention",
    "ss2d",
    "sinc",
    *SPECTRAL,
    "interp_widths",
    "bound_margin",
)
SSM = frozenset({"d_state", "expand", "d_conv"})


MODELS: dict[str, Entry] = {
    "unet": Entry(
        lambda m, c, k: UNet(c, k, m.width, m.depth, m.dropout),
        {"width": 8, "depth": 2},
        "plain UNet baseline",
    ),
    "unet_spectral": Entry(
        lambda m, c, k: SpectralUNet(
            c, k, m.width, m.depth, m.dropout, m.spectral_head, m.spatial_gate, spectral_context=m.spectral_context
        ),
        {"width": 8, "depth": 2},
        "per-pixel linear classifier + gated spatial path: a plain UNet (SSMU-Net's cube baseline)",
        uses=frozenset(SPECTRAL),
    ),
    "ssmu_net": Entry(
        lambda m, c, k: SSMUNet(
            c,
            k,
            m.width,
            m.depth,
            m.d_state,
            m.expand,
            m.n_filters,
            m.dropout,
            m.d_conv,
            m.sinc,
            m.ss2d,
            m.spectral_head,
            m.spatial_gate,
            spectral_context=m.spectral_context,
        ),
        {"width": 8, "depth": 2, "d_state": 4, "n_filters": 4},
        "per-pixel linear classifier + gated spatial path: sinc band-pass filter bank, UNet with SS2D Mamba blocks",
        uses=SSM | {"n_filters", "sinc", "ss2d", *SPECTRAL},
        ss2d_blocks=True,
    ),
    "cmt_unet": Entry(
        lambda m, c, k: CMTUNet(
            c,
            k,
            m.width,
            m.depth,
            m.d_state,
            m.expand,
            m.wavelet,
            m.window,
            m.dropout,
            None if m.encoder_weights is None else str(m.encoder_weights),
            m.d_conv,
            m.msa,
            m.ss2d,
            m.window_attention,
        ),
        {"width": 8, "depth": 2, "d_state": 4, "window": 4},
        "residual CNN encoder + SS2D + multi-scale attention + wavelet conv + window-attention decoder",
        uses=SSM | {"wavelet", "window", "encoder_weights", "msa", "ss2d", "window_attention"},
        ss2d_blocks=True,
    ),
    "micro_segformer": Entry(
        lambda m, c, k: MicroSegFormer(c, k, m.width, m.depth, m.dropout),
        {"width": 8, "depth": 2},
        "small hierarchical efficient-attention encoder + MLP decoder",
    ),
    "field_flow": Entry(
        lambda m, c, k: FieldFlow(
            c,
            m.width,
            m.depth,
            m.d_state,
            m.expand,
            m.d_conv,
            m.n_fourier,
            m.fourier_scale,
            m.backbone,
            m.order,
            m.heads,
            m.dropout,
            interp_widths=tuple(m.interp_widths),
            bound_margin=m.bound_margin,
        ),
        {"width": 16, "depth": 2, "d_state": 4, "n_fourier": 16, "heads": 2},
        "tokens: field_unet's stem (per-field units, normalised convolutions), 4 x 4 patch tokens with learnable "
        "Fourier features, Hilbert-ordered Mamba (or attention), cross-attention to the observations; a bounded "
        "correction; flow matching",
        task="reconstruction",
        classes=False,
        uses=SSM | {"n_fourier", "fourier_scale", "backbone", "order", "heads", "interp_widths", "bound_margin"},
    ),
    "field_unet": Entry(
        lambda m, c, k: FieldUNet(
            c,
            m.width,
            m.depth,
            m.d_state,
            m.expand,
            m.d_conv,
            dropout=m.dropout,
            interp_widths=tuple(m.interp_widths),
            bound_margin=m.bound_margin,
            ss2d=m.ss2d,
        ),
        {"width": 8, "depth": 2, "d_state": 4},
        "grid: per-field units, normalised convolutions in, a bounded correction out (UNet with SS2D stages, time "
        "FiLM); flow matching",
        task="reconstruction",
        classes=False,
        uses=SSM | {"interp_widths", "bound_margin", "ss2d"},
        ss2d_blocks=True,
    ),
}


def model_names(task: str | None = None) -> list[str]:
    return [name for name, entry in MODELS.items() if task is None or entry.task == task]


def check_model_task(name: str, task: str) -> None:
    """A model of another task is a one-line config error naming the valid ones."""
    if name in MODELS and MODELS[name].task != task:
        raise ConfigError(
            f"model.name: {name} is a {MODELS[name].task} model; for {task} use {' or '.join(model_names(task))}"
        )


def keys_that_do_not_fit(name: str, section: dict[str, Any]) -> list[str]:
    """Keys of a ``model`` section (as set, for another model) that model ``name`` does not read or cannot take
    (an even ``d_conv`` for SS2D blocks); empty for an unknown name (building it says so)."""
    entry = MODELS.get(name)
    if entry is None:
        return []
    unread = [k for k in SPECIFIC if k in section and k not in entry.uses]
    even_conv = entry.ss2d_blocks and isinstance(section.get("d_conv"), int) and section["d_conv"] % 2 == 0
    return unread + (["d_conv"] if even_conv else [])


def build_model(cfg: ModelConfig, in_channels: int, num_classes: int, tiny: bool = False) -> nn.Module:
    """The model named ``cfg.name`` for ``in_channels`` bands and ``num_classes`` classes."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; valid models: {', '.join(MODELS)}")
    entry = MODELS[cfg.name]
    if in_channels < 1 or (entry.classes and num_classes < 1):
        what, n = ("input band", in_channels) if in_channels < 1 else ("class", num_classes)
        raise ConfigError(f"{cfg.name} needs at least one {what}, got {n}")
    defaults = ModelConfig()
    ignored = [k for k in SPECIFIC if k not in entry.uses and getattr(cfg, k) != getattr(defaults, k)]
    if ignored:
        raise ConfigError(
            f"model.{ignored[0]} is not read by {cfg.name} (set: {', '.join(ignored)}); remove it or "
            f"choose a model that uses it"
        )
    if entry.ss2d_blocks and cfg.d_conv % 2 == 0:
        raise ConfigError(
            f"model.d_conv: {cfg.name}'s SS2D blocks (and their ablation twins) need an odd kernel to "
            f"keep the map size, got {cfg.d_conv}; use 3 or 5"
        )
    if cfg.linear_epochs and not cfg.spectral_head:
        raise ConfigError(
            "model.linear_epochs trains the spectral head alone, which model.spectral_head: false "
            "removes; set linear_epochs to 0 or keep the spectral head"
        )
    if cfg.spectral_context and not cfg.spectral_head:
        raise ConfigError(
            "model.spectral_context widens the spectral head, which model.spectral_head: false removes; "
            "set spectral_context to 0 or keep the spectral head"
        )
    if cfg.spectral_lr_scale != 1.0 and not cfg.spectral_head:
        raise ConfigError(
            "model.spectral_lr_scale scales the spectral head's learning rate, which model.spectral_head: false "
            "removes; set spectral_lr_scale to 1 or keep the spectral head"
        )
    if tiny:
        cfg = cfg.model_copy(update=entry.tiny)
    return entry.build(cfg, in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
