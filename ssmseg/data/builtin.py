"""The built-in synthetic dataset: prepared once into the cache, or into a folder the user names."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from ssmseg.config.schema import Config
from ssmseg.data import manifest as mf
from ssmseg.data.prepare import PrepResult, input_hash, prepare
from ssmseg.data.synthetic import synthetic_prep_settings
from ssmseg.errors import ConfigError, InputError
from ssmseg.paths import cache_root


def _cache_error(detail: str) -> InputError:
    return InputError(
        f"cannot write the built-in dataset to the cache folder '{cache_root()}' ({detail}); point "
        "SSMSEG_CACHE_DIR at a folder you can write to"
    )


def synthetic_config(cfg: Config, kind: str) -> Config:
    """cfg with its prep section pointing at the synthetic scene of ``kind``."""
    data = cfg.model_dump(mode="json")
    try:
        data["prep"].update(synthetic_prep_settings(kind, cache_root()))
    except OSError as exc:  # SSMSEG_CACHE_DIR is a file, read-only, or not ours to write
        where = f": '{exc.filename}'" if exc.filename else ""
        raise _cache_error(f"{exc.strerror or str(exc).split('. ')[0]}{where}") from None
    return Config.model_validate(data)


def prepare_synthetic(cfg: Config, kind: str, out: Path | None = None, force: bool = False) -> PrepResult:
    """Prepare the synthetic scene into ``out`` (default: a cache folder named by the settings' hash)."""
    scfg = synthetic_config(cfg, kind)
    if out is None:
        out = cache_root() / "datasets" / f"synthetic-{kind}-{input_hash(scfg, [kind])[:12]}"
        if mf.read_if_complete(out) is None:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _cache_error(exc.strerror or type(exc).__name__) from None
            if not os.access(out.parent, os.W_OK | os.X_OK):
                raise _cache_error(f"'{out.parent}' is not writable")
    return prepare(scfg, out, force=force)


def prepare_sinusoids(cfg: Config, out: Path | None = None, force: bool = False) -> PrepResult:
    """The generated sinusoid fields (prep.fields) into ``out`` (default: a cache folder named by the settings)."""
    from ssmseg.data.prepare_fields import prepare_fields

    if out is None:
        settings = {"fields": cfg.prep.fields.model_dump(mode="json"), "split": cfg.prep.split.model_dump(mode="json")}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        out = cache_root() / "datasets" / f"synthetic-sinusoids-{digest}"
    return prepare_fields(cfg, out, force=force, synthetic=True)


def resolve_dataset(cfg: Config, builtin: Callable[[Config], Path]) -> Path:
    """data.dataset, or (when it is empty) ``builtin(cfg)``: the task's built-in synthetic dataset
    (``TaskLife.builtin_dataset``, prepared on first use)."""
    if cfg.data.dataset is not None:
        return Path(cfg.data.dataset)
    if cfg.prep.images or cfg.prep.masks:  # they would be silently replaced by the synthetic data
        raise ConfigError(
            "prep.images/prep.masks are set but data.dataset is empty, so the built-in synthetic data "
            "would be used instead; prepare them first (ssmseg prep --out DIR) and pass "
            "--set data.dataset=DIR"
        )
    return builtin(cfg)
