"""What ``experiments/`` asks a task outside the training loop: the task owns its whole life.

``engine/task.py``'s ``Task`` is what the loop trains (one instance per run, holding its datasets). A
``TaskLife`` answers everything else a command needs, before a run exists or after it has finished:

- ``prep``: ``ssmseg prep``'s dataset folder from the config's sources (``prep.*``);
- ``builtin_dataset``: the built-in synthetic dataset a run uses when ``data.dataset`` is empty;
- ``check_config``: what the config asks of a prepared dataset that the dataset cannot give (before any work);
- ``prepare``: the checks a prepared dataset must pass before training, and the config that will actually run;
- ``check_folds``: every cv fold can train, validate and be scored, checked before the first one trains; returns
  per fold the warnings cv repeats when that fold starts (a held-out class its training part lacks);
- ``evaluate``: the test split or whole scenes (``ssmseg eval``), into a new, empty folder;
- ``score_heldout``: cv's one score of a fold's ``best.pt`` on the fold it held out (``scores_heldout`` False:
  the task has none, and cv reports validation metrics and says so);
- ``check_baselines``/``baselines``: the classical floor on exactly the pixels and classes the model is scored on;
- ``input_warnings``: what an evaluation of these inputs should warn about (scenes the run trained on);
- ``export_model``: the module an export traces, or a one-line error when the task cannot be exported;
- ``baseline``: ``ssmseg baseline``'s classical methods fitted and scored on a prepared dataset, in a new folder;
- ``step_sweep``: what ``ssmseg sweep-steps`` solves for a run (``StepSweep``), or a usage error when the task
  has no ODE sampler to sweep.

Experiments orchestrate (run, cv and eval folders, resume, output safety) and never ask which task it is;
nothing outside ``tasks/`` does (``tests/test_layers.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from ssmseg.config import Config
from ssmseg.tasks.results import BaselineResult, EvalResult, SweepResult

if TYPE_CHECKING:
    from ssmseg.data.prepare import PrepResult


class PreparedSweep(Protocol):
    def run(self, checkpoint: Path, run_dir: Path, tmp: Path) -> SweepResult:
        """Solve, score and conclude; write the sweep's files into the staging folder ``tmp``."""
        ...


class StepSweep(Protocol):
    full_grid: dict[str, Any]  # the ``sweep.*`` settings of ``sweep-steps --full``

    def prepare(self, cfg: Config, state: dict[str, Any], fields: Path | None, device: torch.device) -> PreparedSweep:
        """The model and test fields, checked before any output folder exists; prints the plan."""
        ...


class TaskLife(Protocol):
    name: str
    scores_heldout: bool

    def prep(self, cfg: Config, out: Path, force: bool) -> PrepResult: ...

    def builtin_dataset(self, cfg: Config) -> Path: ...

    def check_config(self, cfg: Config) -> None: ...

    def prepare(self, cfg: Config, dataset: Path, manifest: dict[str, Any], fold: int | None) -> Config: ...

    def check_folds(self, dataset: Path, folds: int) -> list[list[str]]: ...

    def check_baselines(self, option: str) -> None: ...

    def evaluate(
        self,
        cfg: Config,
        state: dict[str, Any],
        device: torch.device,
        out: Path,
        inputs: list[Path],
        masks: list[Path],
        dataset: Path | None,
        model: nn.Module | None = None,
    ) -> EvalResult: ...

    def score_heldout(
        self, cfg: Config, state: dict[str, Any], dataset: Path, fold: int, device: torch.device
    ) -> dict[str, Any]: ...

    def baselines(self, cfg: Config, dataset: Path, fold: int | None, scored: str | None = None) -> dict[str, Any]: ...

    def input_warnings(self, state: dict[str, Any], inputs: list[Path]) -> list[str]: ...

    def export_model(self, state: dict[str, Any], source: Path) -> nn.Module: ...

    def baseline(self, cfg: Config, dataset: Path, fold: int | None, out: Path | None) -> BaselineResult: ...

    def step_sweep(self, run: Path) -> StepSweep: ...
