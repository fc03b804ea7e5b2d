"""Progress bars and messages: the only place the library talks to the terminal (stderr, rich)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Steps per second (throughput)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar on a terminal (nothing when output is not a terminal); yields advance(n=1)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)


def epoch_line(rec: dict[str, Any], monitor: str, best: dict[str, Any]) -> None:
    """One plain line per finished epoch (kept in logs; the bars above are transient)."""
    shown = [f"{k} {v:.4g}" for k, v in rec.items() if k.startswith(("train/loss", "val/")) and isinstance(v, float)]
    star = " *" if best.get("epoch") == rec["epoch"] else ""
    console.print(
        f"epoch {rec['epoch']}: {', '.join(shown)}; lr {rec['lr']:.3g}; {rec['seconds']:.1f}+{rec['val_seconds']:.1f} s"
        f"{star}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def info(message: str) -> None:
    console.print(message, highlight=False)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
