"""Options shared by every command that takes a config, and the one function that resolves them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ssmseg.config import Config, build_config

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (over the preset).", show_default=False),
]
PresetOpt = Annotated[str | None, typer.Option("--preset", "-p", help="Shipped preset name (`ssmseg config presets`).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key: dotted.key=value (YAML value); repeatable."),
]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (runtime.out_dir).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="auto, cpu, cuda or cuda:N (runtime.device).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (runtime.seed).")]


def resolve_config(
    config: Path | None,
    preset: str | None,
    overrides: list[str] | None,
    out: Path | None = None,
    device: str | None = None,
    seed: int | None = None,
    base: tuple[str, dict[str, Any]] | None = None,
    explicit: dict[str, Any] | None = None,
) -> Config:
    """Defaults < preset < --config < --set < explicit options, validated as one ``Config``; ``explicit`` holds
    a command's own options as sections (``{"finetune": {"init": ...}}``)."""
    explicit = dict(explicit or {})
    runtime = {k: v for k, v in (("out_dir", out), ("device", device), ("seed", seed)) if v is not None}
    if runtime:
        explicit["runtime"] = {k: str(v) if isinstance(v, Path) else v for k, v in runtime.items()}
    return build_config(preset=preset, config_file=config, overrides=overrides or [], explicit=explicit, base=base)
