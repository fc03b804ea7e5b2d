"""The per-pixel linear classifier as a path of a segmentation model (``model.spectral_head``).

A 1x1 convolution of the (normalised) bands, or with ``model.spectral_context: k`` of the bands and their k x k
local mean, gives spectral logits; the model's spatial logits add to them through a learned gate
(``model.spatial_gate``, its initial value; 0: the model starts as the linear classifier, and spatial context
only adds what training finds). ``model.linear_epochs`` trains the spectral path alone for that many epochs
before the spatial path joins (:meth:`SpectralPath.set_linear_phase` is told how many training samples that
is). On cubes whose labels are almost a function of the pixel's spectrum this keeps a network from starting
below the classical floor (docs/usage.md, "Hyperspectral benchmarks").
"""

from __future__ import annotations

import torch
from torch import nn

from ssmseg.models.layers.context import spectral_features


class SpectralPath(nn.Module):
    """Base of a segmentation model with a spectral path: subclasses define :meth:`spatial_logits` and call
    :meth:`init_spectral_path` last in their ``__init__`` (the order fixes the random weights)."""

    spectral: nn.Conv2d | None
    gate: nn.Parameter | None

    def init_spectral_path(
        self, in_channels: int, num_classes: int, spectral_head: bool, spatial_gate: float, spectral_context: int
    ) -> None:
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

    def spatial_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, classes, H, W): the model's own spatial network."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, bands, H, W) -> (B, classes, H, W): spectral logits + gate x spatial logits."""
        linear_only = self.linear_only()
        if self.training:
            self.seen += x.shape[0]
        if self.spectral is None:
            return self.spatial_logits(x)
        logits = self.spectral(spectral_features(x, self.spectral_context))
        if linear_only:  # the spatial path is not run at all: the linear phase costs a 1x1 convolution
            return logits + 0.0 * self.gate  # (the gate keeps a gradient, zero, when the head is frozen)
        return logits + self.gate * self.spatial_logits(x)
