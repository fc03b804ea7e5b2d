"""The ``model`` and ``finetune`` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from ssmseg.config.sections.base import Section


class ModelConfig(Section):
    """Which network, and its sizes. Keys a model does not read must stay at their defaults (an error says so)."""

    name: str = Field("ssmu_net", description="Registered model name (`ssmseg models` lists them).")
    width: int = Field(32, ge=4, description="Channels of the first stage; later stages double it.")
    depth: int = Field(3, ge=1, le=6, description="Number of down-sampling stages.")
    d_state: int = Field(16, ge=1, le=256, description="State size N of every selective scan.")
    expand: int = Field(2, ge=1, le=4, description="Inner width factor of the Mamba blocks.")
    d_conv: int = Field(
        3,
        ge=1,
        le=9,
        description="Kernel size of the state-space blocks' convolution (depthwise 2D in SS2D, where it must be "
        "odd; causal 1D in sequence Mamba blocks).",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability before the classifier.")
    n_filters: int = Field(
        16, ge=1, description="SSMU-Net: number of learnable sinc band-pass filters over the spectrum."
    )
    wavelet: Literal["haar", "db2", "none"] = Field(
        "haar", description="CMT-UNet: wavelet of the wavelet convolution; none: the wavelet convolution left out."
    )
    window: int = Field(8, ge=2, description="CMT-UNet: side of the decoder's attention windows.")
    msa: bool = Field(
        True, description="CMT-UNet: multi-scale attention at the bottleneck; false: left out (ablation)."
    )
    window_attention: bool = Field(
        True,
        description="CMT-UNet: window self-attention after each decoder up-sampling; false: plain up-sampling "
        "(bilinear, concatenation, convolutions) (ablation).",
    )
    ss2d: bool = Field(
        True,
        description="cmt_unet, ssmu_net, field_unet: the SS2D Mamba blocks; false: each replaced by its scan-free "
        "twin, SS2D's "
        "projections around a gated depthwise convolution (local context only) (ablation).",
    )
    sinc: bool = Field(
        True,
        description="SSMU-Net: the sinc band-pass filter bank; false: the raw bands alone feed the embedding "
        "(ablation).",
    )
    spectral_head: bool = Field(
        True,
        description="ssmu_net and unet_spectral: a per-pixel linear classifier on the normalised bands (a 1x1 "
        "convolution) whose logits the spatial path adds to through a learned gate; false: the spatial path's logits "
        "alone (ablation).",
    )
    spectral_context: Literal[0, 3, 5, 7] = Field(
        0,
        description="The spectral head (ssmu_net, unet_spectral): 0: a linear classifier of the pixel's bands; k (3, "
        "5 or 7): of the bands and their k x k mean around the pixel (the local mean spectrum, count-normalised at "
        "the patch's borders), the classical spectral-spatial classifier of homogeneous fields (twice the head's "
        "weights).",
    )
    spectral_init: Literal["fit", "random"] = Field(
        "fit",
        description="The spectral head (ssmu_net, unet_spectral) at the start: fit (the logistic regression of a "
        "sample of the training pixels, as `ssmseg baseline` fits it, so training starts at the linear floor) or "
        "random.",
    )
    spectral_train: bool = Field(
        True,
        description="The spectral head (ssmu_net, unet_spectral): trained with the rest (true), or, started by "
        "`spectral_init: fit`, kept at the fitted logistic regression (false: the spatial path learns a correction "
        "to a fixed floor).",
    )
    spectral_lr_scale: float = Field(
        1.0,
        gt=0,
        description="The spectral head (ssmu_net, unet_spectral): its learning rate is the schedule's times this "
        "factor (its own optimiser parameter groups); below 1 keeps the head near its `spectral_init: fit` start "
        "while the rest trains at the full rate; 1: one rate for all.",
    )
    spatial_gate: float = Field(
        0.0,
        description="With the spectral head (ssmu_net, unet_spectral): initial weight of the spatial logits (0: the "
        "model starts as the linear classifier and spatial context only adds what training finds).",
    )
    linear_epochs: int = Field(
        0,
        ge=0,
        description="With the spectral head (ssmu_net, unet_spectral): epochs that train the spectral path alone "
        "before the spatial path joins (which then starts beside a head that already classifies); 0: both paths "
        "from the start.",
    )
    encoder_weights: Path | None = Field(
        None, description="CMT-UNet: local file of encoder weights to start from (nothing is downloaded)."
    )
    backbone: Literal["mamba", "attention"] = Field(
        "mamba", description="field_flow: sequence blocks over the tokens (Mamba, or attention to compare)."
    )
    order: Literal["hilbert", "rows", "random"] = Field(
        "hilbert", description="field_flow: order of the point tokens fed to the scan (a space-filling curve)."
    )
    n_fourier: int = Field(64, ge=4, le=1024, description="field_flow: learnable Fourier features of coordinates.")
    fourier_scale: float = Field(10.0, gt=0, description="field_flow: initial scale of the Fourier frequencies.")
    heads: int = Field(4, ge=1, le=32, description="field_flow: attention heads (cross-attention and backbone).")
    interp_widths: list[Annotated[float, Field(gt=0, le=16)]] = Field(
        [0.5, 1.0, 2.0],
        max_length=8,
        description="field_unet, field_flow: widths of the normalised convolutions of the observations given as "
        "input, in units of the field's mean observation spacing; the model predicts a correction to the middle one; "
        "empty: none (the correction is to the field's observed mean).",
    )
    bound_margin: float | None = Field(
        0.25,
        ge=0,
        description="field_unet, field_flow: outputs are bounded to each field's observed range widened by this "
        "share of its span on each side; empty: unbounded.",
    )


class FinetuneConfig(Section):
    """Fine-tuning: a new run that starts from a trained run's weights (`ssmseg train --init RUN`), with named
    parts frozen; the rest trains with this run's `optim.lr`. Unlike `--resume`, nothing else carries over."""

    init: Path | None = Field(
        None,
        description="Run folder (its best.pt, else latest.pt) or checkpoint whose matching weights start this run; "
        "every layer whose name and shape match is loaded, the rest is listed with the reason. A new classifier "
        "head when the classes differ; a different band count reinitialises the first layer (with a warning). "
        "Empty: random initialisation. `ssmseg train --init` sets it.",
    )
    freeze: list[Literal["encoder", "ssm", "spectral", "decoder", "head"]] = Field(
        [],
        description="Parts kept fixed: encoder (the CNN encoder, without its SS2D blocks), ssm (every SS2D/Mamba "
        "block), spectral (the spectral front end: ssmu_net's sinc bank and embedding, the first convolution "
        "of cmt_unet and unet), decoder, head (the classifier). Needs finetune.init.",
    )
