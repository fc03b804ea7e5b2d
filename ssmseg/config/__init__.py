"""Config schema, loading (presets, YAML, overrides) and the generated reference."""

from ssmseg.config.loading import available_presets, build_config, dump_config, save_config
from ssmseg.config.schema import Config

__all__ = ["Config", "available_presets", "build_config", "dump_config", "save_config"]
