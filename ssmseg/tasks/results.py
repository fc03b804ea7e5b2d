"""What a task's evaluation returns to ``ssmseg eval``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class EvalResult:
    out: Path
    metrics: dict[str, Any] | None
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
