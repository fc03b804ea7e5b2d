"""What a task returns to the commands: its evaluation (``ssmseg eval``), its baselines (``ssmseg baseline``)
and its step sweep (``ssmseg sweep-steps``)."""

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


@dataclass
class BaselineResult:
    out: Path
    results: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class SweepResult:
    out: Path
    rows: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    conclusions: list[str]
    protocol: dict[str, Any]
    timing: dict[str, Any]


class PartialResult(Exception):
    """An evaluation of several inputs stopped (an error or Ctrl-C) after some finished: ``ssmseg eval``
    publishes the finished ones (with ``incomplete.json``) and reports ``error(out)``."""

    def __init__(self, finished: list[str], missing: list[str], cause: BaseException) -> None:
        super().__init__(f"{len(finished)} finished, {len(missing)} missing")
        self.finished, self.missing, self.cause = finished, missing, cause

    def error(self, out: Path) -> BaseException:
        """The one-line error (of the cause's kind and exit code) that says where the finished outputs are."""
        from ssmseg.errors import InputError, Interrupted, SsmsegError

        total = len(self.finished) + len(self.missing)
        cause = self.cause
        why = "interrupted" if isinstance(cause, KeyboardInterrupt) else str(cause) or type(cause).__name__
        message = (
            f"eval stopped at '{self.missing[0]}', scene {len(self.finished) + 1} of {total} ({why}); the "
            f"{len(self.finished)} finished scene{'s are' if len(self.finished) > 1 else ' is'} kept in "
            f"'{out}' (incomplete.json lists the {len(self.missing)} missing); run the same command again "
            "to evaluate every scene"
        )
        if isinstance(cause, KeyboardInterrupt):
            return Interrupted(message)
        if isinstance(cause, SsmsegError):
            try:
                return type(cause)(message)
            except TypeError:
                pass
        return InputError(message)
