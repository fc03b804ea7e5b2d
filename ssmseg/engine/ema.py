"""An exponential moving average of the weights (``train.ema``): updated after every optimiser step, used for
validation, epoch selection and every checkpoint's ``model`` (so eval, cv, export and ``--init`` use it), while
training goes on with the optimiser's own weights.

The average is bias-corrected as Adam's moments are: after ``n`` updates it is the weights after each step
weighted by ``decay ** age`` and normalised (``rate = (1 - decay) / (1 - decay ** n)``; the first update
copies the weights), so the initial weights never count and a short run is not pulled back to its start.
Floating-point entries of the state dict (parameters and float buffers) are averaged; integer buffers (step
counters) are copied from the trained model.

A checkpoint of a run with the average holds the averaged weights as ``model`` and, under ``ema``, the decay,
the number of updates and the trained weights (``online``), so ``--resume`` continues both exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class WeightEMA:
    """The moving average of ``model``'s state dict; ``decay`` in (0, 1) per optimiser step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def rate(self) -> float:
        """The weight of the newest weights in the next update (1 on the first: bias correction)."""
        n = self.updates + 1
        return (1.0 - self.decay) / (1.0 - self.decay**n)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step: shadow <- shadow + rate * (weights - shadow); integer buffers copied."""
        rate = self.rate()
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if shadow.dtype.is_floating_point:
                shadow.lerp_(value.detach().to(shadow.dtype), rate)
            else:
                shadow.copy_(value)
        self.updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The averaged weights in ``model`` for the block (validation), the trained ones restored after."""
        online = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(online)

    def checkpoint(self, online: dict[str, torch.Tensor]) -> dict[str, Any]:
        """What a checkpoint holds besides the averaged ``model``: (``online``: the trained weights, on the CPU)."""
        return {"decay": self.decay, "updates": self.updates, "online": online}

    def averaged(self) -> dict[str, torch.Tensor]:
        """The averaged weights on the CPU (a checkpoint's ``model``)."""
        return {k: v.detach().cpu().clone() for k, v in self.shadow.items()}

    def load(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: its ``model`` is the average when it has ``ema``; a checkpoint written
        without the average starts one at its weights (the next update replaces them: rate 1)."""
        for key, value in state["model"].items():
            self.shadow[key].copy_(value)
        self.updates = int(state["ema"]["updates"]) if "ema" in state else 0


def trained_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The optimiser's own weights of a checkpoint: ``ema.online`` when it holds an average, else ``model``."""
    return state["ema"]["online"] if "ema" in state else state["model"]
