"""The built-in synthetic dataset: prepared once into the cache, or into a folder the user names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ssmseg.config.schema import Config
from ssmseg.data.prepare import PrepResult, input_hash, prepare
from ssmseg.data.synthetic import synthetic_prep_settings
from ssmseg.errors import ConfigError
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


def prepare_sinusoids(cfg: Config, out: Path | None = None, force: bool = False) -> PrepResult:
    """The generated sinusoid fields (prep.fields) into ``out`` (default: a cache folder named by the settings)."""
    from ssmseg.data.prepare_fields import prepare_fields

    if out is None:
        settings = {"fields": cfg.prep.fields.model_dump(mode="json"), "split": cfg.prep.split.model_dump(mode="json")}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        out = cache_root() / "datasets" / f"synthetic-sinusoids-{digest}"
    return prepare_fields(cfg, out, force=force, synthetic=True)


def resolve_dataset(cfg: Config) -> Path:
    """data.dataset, or the built-in synthetic dataset of the task (prepared on first use) when it is empty."""
    if cfg.data.dataset is not None:
        return Path(cfg.data.dataset)
    if cfg.task.name == "reconstruction" or cfg.data.synthetic == "sinusoids":
        if cfg.task.name != "reconstruction":
            raise ConfigError("data.synthetic: sinusoids are fields for task.name reconstruction; "
                              "use hyperspectral or rgb for segmentation")  # fmt: skip
        return prepare_sinusoids(cfg).out
    return prepare_synthetic(cfg, cfg.data.synthetic).out
