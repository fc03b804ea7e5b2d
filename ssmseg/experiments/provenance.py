"""What an evaluation evaluated: the key of its outputs (its marker's inputs) and the ``evaluated`` record
in metrics.json (run, checkpoint file and epoch, model, dataset, fold)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssmseg.config import Config
from ssmseg.engine.checkpoint import resolve
from ssmseg.experiments.folders import run_folder_of


def eval_key(
    checkpoint: Path, state: dict[str, Any], inputs: list[Path], masks: list[Path], dataset: Path | None, cfg: Config
) -> dict[str, Any]:
    """Everything that determines an evaluation's outputs."""
    return {
        "checkpoint": str(resolve(checkpoint).resolve()),
        "epoch": state.get("epoch"),
        "inputs": [str(Path(p).resolve()) for p in inputs],
        "masks": [str(Path(p).resolve()) for p in masks],
        "dataset": None if inputs else str(dataset or state.get("dataset")),
        "eval": cfg.eval.model_dump(mode="json"),
    }


def evaluated(checkpoint: Path, state: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation evaluated: the run, the checkpoint file and epoch, and the model."""
    run = run_folder_of(checkpoint)
    config = state.get("config", {})
    return {
        "run": str(run) if (run / "config.yaml").is_file() else None,
        "checkpoint": str(resolve(checkpoint)),
        "epoch": None if state.get("epoch") is None else int(state["epoch"]) + 1,
        "model": state.get("model_name") or config.get("model", {}).get("name"),
        "model_config": config.get("model"),
        "dataset": state.get("dataset"),
        "fold": state.get("fold"),
        "best": state.get("best"),
    }


def record_evaluated(folder: Path, metrics: dict[str, Any] | None, source: dict[str, Any]) -> None:
    """Add ``evaluated`` to metrics.json (and to the returned metrics)."""
    path = Path(folder) / "metrics.json"
    if metrics is None or not path.is_file():
        return
    metrics["evaluated"] = source
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({"evaluated": source, **data}, indent=1), encoding="utf-8")
