"""Build one validated ``Config`` from its sources, and write it back out.

Precedence, lowest first: schema defaults < preset < ``--config`` file < ``--set`` overrides < explicit
options (``--device``, ``--seed``, ``--out``). Every problem is reported at once, each with its dotted path
and the source that set it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ssmseg.config.schema import Config
from ssmseg.errors import ConfigError

Layer = tuple[str, dict[str, Any]]


def _preset_root() -> Any:
    """The presets of this ssmseg: the checkout's ``presets/`` when the code runs from a checkout (so a second
    checkout on PYTHONPATH does not read the installed one's presets), else the installed ``ssmseg.presets``."""
    checkout = Path(__file__).resolve().parents[2] / "presets"
    if (checkout / "__init__.py").is_file() and (checkout / "default.yaml").is_file():
        return checkout
    try:
        return resources.files("ssmseg.presets")
    except ModuleNotFoundError:
        return checkout


def available_presets() -> list[str]:
    """Names of the shipped presets (``presets/*.yaml``, installed as ``ssmseg.presets``)."""
    return sorted(p.name[: -len(".yaml")] for p in _preset_root().iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a shipped preset; an unknown name lists the available ones."""
    names = available_presets()
    if name not in names:
        hint = difflib.get_close_matches(name, names, n=1)
        did_you_mean = f"did you mean '{hint[0]}'? " if hint else ""
        raise ConfigError(f"unknown preset '{name}'; {did_you_mean}available presets: {', '.join(names)}")
    return (_preset_root() / f"{name}.yaml").read_text(encoding="utf-8")


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """Parse a YAML mapping; a syntax error names the source, line and column."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: YAML syntax error ({exc.problem}); fix the file at that position") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc}); fix the file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, not {type(data).__name__}")
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML config file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder; give a YAML file")
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist; check the path given to --config")
    # Not only regular files: a pipe (--config <(...)) is read too; /dev/null is then an empty config.
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file '{path}' ({exc}); check its permissions and encoding") from exc
    data = parse_yaml(text, str(path))
    if not data:  # an empty file is almost always the wrong file, and would silently run the defaults
        raise ConfigError(f"config file '{path}' holds no settings (it is empty); give the right file or leave it out")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=3e-4", "data.crop_size=32"]`` into a nested dict; values are parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set '{item}': expected dotted.key=value, for example --set optim.lr=3e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            if raw.strip().startswith(("[", "{")):  # a list or mapping whose items hold brackets, '*', ':' ...
                raise ConfigError(
                    f"--set '{item}': the value is not a valid YAML list or mapping ({getattr(exc, 'problem', exc)}); "
                    f"quote items that hold brackets or '*', and the whole option for the shell, for example "
                    f"--set '{key}=[\"data/img/[ab]*.tif\"]'"
                ) from None
            value = raw  # an unparsable value is kept as a string; the schema judges it
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}': '{part}' is given both as a value and as a section")
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``over`` into a copy of ``base``; mappings merge, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(
    preset: str | None = None,
    config_file: Path | None = None,
    overrides: Iterable[str] = (),
    explicit: Mapping[str, Any] | None = None,
    base: tuple[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build and validate the config from every source, in order of precedence; ``base`` (name, dict),
    such as a checkpoint's saved config, sits just above the schema defaults."""
    layers: list[Layer] = [(base[0], _migrate(base[1]))] if base else []
    if preset:
        layers.append((f"preset '{preset}'", parse_yaml(preset_text(preset), f"preset '{preset}'")))
    if config_file is not None:
        layers.append((str(config_file), read_yaml(config_file)))
    overrides = list(overrides)
    if overrides:
        layers.append(("--set", parse_overrides(overrides)))
    if explicit:
        layers.append(("command-line options", dict(explicit)))
    if preset:
        _fit_preset_to_model(layers, next(i for i, (name, _) in enumerate(layers) if name == f"preset '{preset}'"))
    cfg = validate_layers(layers)
    first_user = len(layers) - (config_file is not None) - bool(overrides) - bool(explicit)
    cfg._user_keys = frozenset(key for _, layer in layers[first_user:] for key in _leaf_keys(layer))
    return cfg


def _leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _fit_preset_to_model(layers: list[Layer], index: int) -> None:
    """When a layer above the preset picks another model, drop the model keys that only the preset set, for its
    own model, and that the chosen model does not read or cannot take (one notice line). Keys a later layer
    sets stay, so the model check still refuses them."""
    name, layer = layers[index]
    section = layer.get("model")
    if not isinstance(section, Mapping):
        return
    chosen = section.get("name")
    for _, above in layers[index + 1 :]:
        model = above.get("model")
        if isinstance(model, Mapping) and "name" in model:
            chosen = model["name"]
    if not isinstance(chosen, str) or chosen == section.get("name"):
        return
    from ssmseg.models.registry import keys_that_do_not_fit  # imports torch: only when a model is switched

    later = [above["model"] for _, above in layers[index + 1 :] if isinstance(above.get("model"), Mapping)]
    set_above = {k for model in later for k in model}
    drop = [k for k in keys_that_do_not_fit(chosen, dict(section)) if k not in set_above]
    if not drop:
        return
    layers[index] = (name, {**layer, "model": {k: v for k, v in section.items() if k not in drop}})
    shown = ", ".join(f"model.{k}={section[k]}" for k in drop)
    from ssmseg.progress import info

    one = len(drop) == 1
    it = "it" if one else "them"
    info(
        f"note: {name} sets {shown} for {section.get('name')}; {chosen} does not use {it} or cannot take {it}, "
        f"so {'it is' if one else 'they are'} left at the default"
    )


def _migrate(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A config saved by an earlier ssmseg (a checkpoint's) in today's keys: prep.overlap of 1 or more was pixels
    and is now prep.overlap_px."""
    out = dict(saved)
    prep = out.get("prep")
    if isinstance(prep, Mapping) and isinstance(prep.get("overlap"), (int, float)) and prep["overlap"] >= 1:
        out["prep"] = {**prep, "overlap": 0.0, "overlap_px": int(prep["overlap"])}
    return out


def validate_layers(layers: list[Layer]) -> Config:
    """Merge layers and validate; on failure raise one ``ConfigError`` listing every problem."""
    data: dict[str, Any] = {}
    for _, layer in layers:
        data = deep_merge(data, layer)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [line for err in exc.errors() for line in _describe(err, layers)]
        sources = " + ".join(name for name, _ in layers) or "defaults"
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(f"invalid config ({sources}): {len(problems)} {noun}", problems) from None


def _describe(err: Mapping[str, Any], layers: list[Layer]) -> list[str]:
    loc = [str(part) for part in err["loc"]]
    path = ".".join(loc)
    if not loc:  # cross-field rules: each line already starts with its own path
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
        return [line for line in msg.splitlines() if line]
    where = _source_of(loc, layers)
    suffix = f" (from {where})" if where else ""
    if err["type"] == "extra_forbidden":
        hint = _closest_key(loc)
        return [f"{path}: unknown key{suffix}; " + (f"did you mean {hint}?" if hint else "remove it")]
    if err["type"] == "missing":
        return [f"{path}: required{suffix}; set it"]
    return [f"{path}: {err['msg']} (got {err.get('input')!r}){suffix}"]


def _source_of(loc: list[str], layers: list[Layer]) -> str | None:
    """Name of the last layer that sets ``loc`` (the one whose value was validated)."""
    for name, layer in reversed(layers):
        node: Any = layer
        for part in loc:
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return name
    return None


def _closest_key(loc: list[str]) -> str | None:
    """The valid dotted key nearest to an unknown one, looked up in the schema at that depth."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    hint = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return ".".join([*loc[:-1], hint[0]]) if hint else None


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML: exactly what runs, and what is saved in every run folder."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=False)


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_config(cfg), encoding="utf-8")
    tmp.replace(path)
