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
from ssmseg.models.micro_segformer import MicroSegFormer
from ssmseg.models.ssmu_net import SSMUNet
from ssmseg.models.unet import UNet


@dataclass(frozen=True)
class Entry:
    build: Callable[[ModelConfig, int, int], nn.Module]
    tiny: dict[str, Any]
    summary: str
    task: str = "segmentation"
    uses: frozenset[str] = frozenset()  # model keys beyond width/depth/dropout that this model reads


MODELS: dict[str, Entry] = {
    "unet": Entry(
        lambda m, c, k: UNet(c, k, m.width, m.depth, m.dropout),
        {"width": 8, "depth": 2},
        "plain UNet baseline",
    ),
    "ssmu_net": Entry(
        lambda m, c, k: SSMUNet(c, k, m.width, m.depth, m.d_state, m.expand, m.n_filters, m.dropout, m.d_conv),
        {"width": 8, "depth": 2, "d_state": 4, "n_filters": 4},
        "sinc band-pass filter bank + UNet with SS2D Mamba blocks",
        uses=frozenset({"ss2d"}),
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
        ),
        {"width": 8, "depth": 2, "d_state": 4, "window": 4},
        "residual CNN encoder + SS2D + multi-scale attention + wavelet conv + window-attention decoder",
        uses=frozenset({"ss2d"}),
    ),
    "micro_segformer": Entry(
        lambda m, c, k: MicroSegFormer(c, k, m.width, m.depth, m.dropout),
        {"width": 8, "depth": 2},
        "small hierarchical efficient-attention encoder + MLP decoder",
    ),
}


def model_names() -> list[str]:
    return list(MODELS)


def build_model(cfg: ModelConfig, in_channels: int, num_classes: int, tiny: bool = False) -> nn.Module:
    """The model named ``cfg.name`` for ``in_channels`` bands and ``num_classes`` classes."""
    if cfg.name not in MODELS:
        raise ConfigError(f"unknown model '{cfg.name}'; valid models: {', '.join(MODELS)}")
    entry = MODELS[cfg.name]
    if "ss2d" in entry.uses and cfg.d_conv % 2 == 0:
        raise ConfigError(f"model.d_conv: {cfg.name}'s SS2D blocks need an odd kernel to keep the map size, got "
                          f"{cfg.d_conv}; use 3 or 5")  # fmt: skip
    if tiny:
        cfg = cfg.model_copy(update=entry.tiny)
    return entry.build(cfg, in_channels, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
