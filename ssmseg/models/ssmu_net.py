"""SSMU-Net: learnable sinc band-pass filters over the spectrum, an embedding, then a UNet whose
down-sampled stages carry SS2D Mamba blocks for long-range spatial context.
(B, bands, H, W) -> (B, classes, H, W).

The per-pixel linear classifier is a path of the model (``model.spectral_head``): a 1x1 convolution of the
(normalised) bands gives spectral logits, and the UNet's spatial logits are added to them through a learned
gate (``model.spatial_gate``, its initial value; 0: the model starts as the linear classifier, and spatial
context only adds what training finds). ``model.linear_epochs`` trains the spectral path alone for that
many epochs before the spatial path joins (the spatial path then starts from a head that already classifies):
:meth:`SSMUNet.set_linear_phase` is told how many training samples that is.
``model.spectral_context: k`` makes the head read the bands and their k x k local mean
(:func:`~ssmseg.models.layers.context.spectral_features`): the classical spectral-spatial linear classifier.

Ablation switches: ``model.sinc: false`` feeds the raw bands alone to the embedding; ``model.ss2d: false``
replaces each SS2D block by its scan-free twin (``ConvMixBlock``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssmseg.models.layers.context import spectral_features
from ssmseg.models.layers.conv import ConvBlock, Up, context_block, norm
from ssmseg.models.layers.sinc import SincBandFilters


class SSMUNet(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depth: int = 3,
        d_state: int = 16,
        expand: int = 2,
        n_filters: int = 16,
        dropout: float = 0.0,
        d_conv: int = 3,
        sinc: bool = True,
        ss2d: bool = True,
        spectral_head: bool = True,
        spatial_gate: float = 0.0,
        sinc_samples: int | None = 2,
        scan_from: int = 2,
        spectral_context: int = 0,
    ) -> None:
        super().__init__()
        kernel = min(15, max(3, in_channels // 2 * 2 - 1))
        self.sinc = SincBandFilters(n_filters, kernel, samples=sinc_samples) if sinc else None
        # The raw bands go in beside the filter bank: a skip that keeps the exact spectrum available.
        spectral = self.sinc.out_channels if self.sinc is not None else 0
        self.embed = nn.Sequential(nn.Conv2d(spectral + in_channels, width, 1), norm(width), nn.GELU())
        chans = [width * 2**i for i in range(depth + 1)]
        # Full resolution keeps plain convolutions (as VM-UNet starts at 1/4): the scans run where sequences are
        # 4x shorter, which halves the model's cost without losing the global context they bring.
        self.enc = nn.ModuleList([ConvBlock(width, chans[0])])
        for i in range(depth):
            conv = ConvBlock(chans[i], chans[i + 1])  # built first: the init order fixes the random weights
            if i + 1 < scan_from:
                self.enc.append(conv)
            else:
                self.enc.append(nn.Sequential(conv, context_block(chans[i + 1], d_state, expand, d_conv, ss2d)))
        self.up = nn.ModuleList(Up(chans[i + 1], chans[i], chans[i]) for i in reversed(range(depth)))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(chans[0], num_classes, 1)
        # The per-pixel linear classifier on the bands, and the gate through which spatial logits add to it.
        # spectral_context k > 0: the head reads [bands, k x k mean of the bands] (2 * bands channels).
        self.spectral_context = int(spectral_context)
        head_in = in_channels * (2 if self.spectral_context else 1)
        self.spectral = nn.Conv2d(head_in, num_classes, 1) if spectral_head else None
        self.gate = nn.Parameter(torch.tensor(float(spatial_gate))) if spectral_head else None
        # Training samples seen, and how many of them train the spectral path alone (state: saved and resumed).
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("linear_until", torch.zeros((), dtype=torch.long))

    def set_linear_phase(self, samples: int) -> None:
        """Train the spectral path alone for the first ``samples`` training samples (0: never alone)."""
        if samples and self.spectral is None:
            raise ValueError("a linear phase needs the spectral head (model.spectral_head: true)")
        self.linear_until.fill_(int(samples))

    def linear_only(self) -> bool:
        """Whether the spatial path is off now (during the linear phase, in training and evaluation alike)."""
        return self.spectral is not None and int(self.seen) < int(self.linear_until)

    def embed_sinc(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, width, H, W): ``embed(cat([sinc(x), x]))`` without building the concatenation:
        the sinc bank's signed means are linear in the bands, so their block of the 1x1 embedding folds into the
        raw bands' block, and only the RMS maps are convolved apart (same weights, same result)."""
        conv, fp = self.embed[0], self.sinc.out_channels // 2
        mean, rms_maps = self.sinc.parts(x)  # (F*P, bands), (B, F*P, H, W)
        w = conv.weight.flatten(1)  # (width, 2 F*P + bands): [means | rms | bands], the order of the concatenation
        y = F.conv2d(x, (w[:, 2 * fp :] + w[:, :fp] @ mean)[:, :, None, None], conv.bias)
        y = y + F.conv2d(rms_maps, w[:, fp : 2 * fp, None, None])
        return self.embed[2](self.embed[1](y))

    def spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, classes, H, W): the UNet path (sinc bank, embedding, SS2D stages)."""
        y = self.embed(x) if self.sinc is None else self.embed_sinc(x)
        skips = [self.enc[0](y)]
        for stage in self.enc[1:]:
            skips.append(stage(F.max_pool2d(skips[-1], 2, ceil_mode=True)))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.head(self.drop(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        linear_only = self.linear_only()
        if self.training:
            self.seen += x.shape[0]
        if self.spectral is None:
            return self.spatial_logits(x)
        logits = self.spectral(spectral_features(x, self.spectral_context))
        if linear_only:  # the spatial path is not run at all: the linear phase costs a 1x1 convolution
            return logits + 0.0 * self.gate  # (the gate keeps a gradient, zero, when the head is frozen)
        return logits + self.gate * self.spatial_logits(x)
