"""Progress for any long stage: a rich bar on a terminal, and otherwise (logs, CI, nohup) one plain line with
done/total, rate and ETA every ~30 s, so no stage is silent for longer than that.

    with progress_bar("scoring fold 2", total) as advance:   # ssmseg.progress; off a terminal, this class
        for chunk in chunks:
            ...
            advance(len(chunk))

``SSMSEG_PROGRESS_EVERY`` (seconds, default 30) sets the interval of the plain lines.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

EVERY = 30.0


def duration(seconds: float) -> str:
    """12s, 3m05s, 1h02m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SSMSEG_PROGRESS_EVERY", EVERY)))
    except ValueError:
        return EVERY


class PlainProgress:
    """Counts work done and prints ``label: done/total (pct), rate/s, elapsed, ETA`` at most every ``every``
    seconds (the first line after ``every`` seconds: a short stage prints nothing)."""

    def __init__(
        self,
        label: str,
        total: int | None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.label, self.total, self.clock, self.enabled = label, total, clock, enabled
        self.every = interval() if every is None else every
        self.out = out
        self.done = 0
        self.start = self.last = clock()
        self.lines = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.emit(self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            left = self.total - self.done
            eta = f", ETA {duration(left / rate)}" if rate > 0 and left > 0 else ""
            head = f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)"
        else:
            eta, head = "", f"{self.done} done"
        speed = f"{rate:.3g}/s" if rate >= 0.1 else f"{1 / rate:.3g} s each" if rate > 0 else "starting"
        return f"{self.label}: {head}, {speed}, {duration(elapsed)} elapsed{eta}"

    def emit(self, line: str) -> None:
        self.lines += 1
        print(line, file=self.out or sys.stderr, flush=True)
