"""Run logging: ``history.json`` (one record per epoch, rewritten atomically) and TensorBoard events."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from ssmseg.jsonsafe import clean


def dumps(data: Any) -> str:
    """Valid JSON always (non-finite numbers written as null), indented like every file ssmseg writes."""
    return json.dumps(clean(data), indent=1, allow_nan=False)


class RunLogger:
    """Writes only on the main process; on other ranks every method does nothing."""

    def __init__(self, run_dir: Path, enabled: bool, resumed_epochs: int = 0) -> None:
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.tb = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a crashed run wrote past the epoch we resume from.
            self.tb = SummaryWriter(
                str(self.run_dir / "tensorboard"), purge_step=resumed_epochs + 1 if resumed_epochs else None
            )

    def write_history(self, history: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        tmp = self.run_dir / ".history.json.tmp"
        tmp.write_text(dumps({**(extra or {}), "epochs": history}), encoding="utf-8")
        tmp.replace(self.run_dir / "history.json")

    def scalars(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for key, value in rec.items():
            if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                self.tb.add_scalar(key, value, rec["epoch"])
        self.tb.flush()

    def image(self, tag: str, image: torch.Tensor, epoch: int) -> None:
        """image (3, H, W) uint8."""
        if self.enabled:
            self.tb.add_image(tag, image, epoch)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
