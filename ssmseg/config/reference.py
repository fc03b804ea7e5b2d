"""Render ``docs/config.md`` from the schema, so the reference can never drift from the code."""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ssmseg.config.schema import Config

HEADER = """# Config reference

Generated from `ssmseg/config/schema.py` by `ssmseg config reference > docs/config.md`; do not edit by hand
(a test fails when this file is stale).

Sources, lowest precedence first: schema defaults, `--preset NAME`, `--config FILE`, `--set key=value`
(repeatable, value parsed as YAML), then the explicit options `--device`, `--seed` and `--out`.
`ssmseg config show` prints the resolved result; every run folder keeps it as `config.yaml`.
"""


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    text = str(annotation) if typing.get_origin(annotation) else getattr(annotation, "__name__", str(annotation))
    for noise in ("typing.", "pathlib.", "NoneType"):
        text = text.replace(noise, "" if noise != "NoneType" else "None")
    return text.replace("|", "\\|")


def _default(field: Any) -> str:
    value = field.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value, default=str)}`"


def render_reference() -> str:
    """Markdown reference: one table per section with key, type, default and description."""
    lines = [HEADER]
    for section, field in Config.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        lines += [f"## `{section}`", "", field.description or "", ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, sub in model.model_fields.items():
            lines.append(
                f"| `{section}.{name}` | `{_type_name(sub.annotation)}` | {_default(sub)} | {sub.description} |"
            )
        lines.append("")
    return "\n".join(lines)
