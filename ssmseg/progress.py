"""Progress bars and messages: the only place the library talks to the terminal (stderr, rich).

Under torchrun only rank 0 prints. Bars are drawn on a terminal only; one plain line per epoch is printed
everywhere, so logs, CI and nohup output show progress too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

from ssmseg.eta import PlainProgress

console = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Steps per second (throughput)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")


_scope: list[str] = []  # e.g. ["fold 2/3"] while cv trains a fold: epoch lines say which fold they belong to


@contextmanager
def scope(label: str) -> Iterator[None]:
    """Prefix epoch lines and bar labels with ``label`` (``fold 2/3: epoch 4/10 ...``) inside the block."""
    _scope.append(label)
    try:
        yield
    finally:
        _scope.pop()


def _scoped(text: str) -> str:
    return ": ".join([*_scope, text])


def main_process() -> bool:
    """False on torchrun ranks other than 0 (they print nothing)."""
    return (os.environ.get("RANK", "0") or "0") == "0"


class Advance:
    """What ``progress_bar`` yields: ``advance(n=1)`` counts work done; ``advance.set_total(total)`` corrects the
    total when the amount of work turns out other than planned (an adaptive solver's model calls), so the ETA
    follows what is measured."""

    def __init__(self, step: Callable[[int], None], retotal: Callable[[int | None], None]) -> None:
        self._step, self._retotal = step, retotal

    def __call__(self, n: int = 1) -> None:
        self._step(n)

    def set_total(self, total: int | None) -> None:
        self._retotal(total)


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Advance]:
    """A bar on a terminal; elsewhere a plain line with done/total and ETA every ~30 s (``eta.PlainProgress``);
    yields an ``Advance``: advance(n=1), advance.set_total(total)."""
    label = _scoped(label)
    if not console.is_terminal:
        plain = PlainProgress(label, total, enabled=main_process())
        yield Advance(plain.advance, lambda t: setattr(plain, "total", t))
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (console.is_terminal and main_process()),
    ) as bar:
        task = bar.add_task(label, total=total)
        yield Advance(lambda n=1: bar.advance(task, n), lambda t: bar.update(task, total=t))


def info(message: str) -> None:
    if main_process():
        console.print(message, highlight=False, markup=False, soft_wrap=True)


def warn(message: str) -> None:
    if main_process():
        console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def epoch_line(rec: dict[str, Any], total: int | None = None, best: bool = False) -> None:
    """One plain line per finished epoch (kept in logs, CI and nohup; the bars are transient): lr, training
    loss, every validation value, its duration, and a star when it is the best so far."""
    if not main_process():
        return
    shown = [f"lr {rec['lr']:.3g}"] if "lr" in rec else []
    keys = ["train/loss", *(k for k in rec if k.startswith("val/"))]
    shown += [f"{k} {rec[k]:.4f}" for k in keys if isinstance(rec.get(k), (int, float))]
    seconds = sum(rec.get(k, 0.0) for k in ("seconds", "val_seconds"))
    epoch = f"{rec.get('epoch', '?')}/{total}" if total else f"{rec.get('epoch', '?')}"
    line = _scoped(f"epoch {epoch}: {', '.join(shown)} ({seconds:.1f} s){' *' if best else ''}")
    console.print(line, highlight=False, markup=False, soft_wrap=True)
