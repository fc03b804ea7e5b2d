"""The built-in synthetic dataset: prepared once into the cache, or into a folder the user names."""

from __future__ import annotations

from pathlib import Path

from ssmseg.config.schema import Config
from ssmseg.data.prepare import PrepResult, input_hash, prepare
from ssmseg.data.synthetic import synthetic_prep_settings
from ssmseg.paths import cache_root


def synthetic_config(cfg: Config, kind: str) -> Config:
    """cfg with its prep section pointing at the synthetic scene of ``kind``."""
    data = cfg.model_dump(mode="json")
    data["prep"].update(synthetic_prep_settings(kind, cache_root()))
    return Config.model_validate(data)


def prepare_synthetic(cfg: Config, kind: str, out: Path | None = None, force: bool = False) -> PrepResult:
    """Prepare the synthetic scene into ``out`` (default: a cache folder named by the settings' hash)."""
    scfg = synthetic_config(cfg, kind)
    if out is None:
        out = cache_root() / "datasets" / f"synthetic-{kind}-{input_hash(scfg, [kind])[:12]}"
    return prepare(scfg, out, force=force)


def resolve_dataset(cfg: Config) -> Path:
    """data.dataset, or the built-in synthetic dataset (prepared on first use) when it is empty."""
    if cfg.data.dataset is not None:
        return Path(cfg.data.dataset)
    return prepare_synthetic(cfg, cfg.data.synthetic).out
