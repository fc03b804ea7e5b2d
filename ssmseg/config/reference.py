"""Render ``docs/config.md`` from the schema, so the reference can never drift from the code."""

from __future__ import annotations

import json
import types
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


def _constraint(meta: Any) -> str:
    """``>= 1`` and the like for one annotated-types constraint (``Ge(ge=1)``)."""
    for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if hasattr(meta, attr):
            return f"{sign} {getattr(meta, attr)}"
    return ""


def _type_text(annotation: Any) -> str:
    """A readable type: ``list[int >= 1, <= 10000]``, ``euler | midpoint``, ``int | None``, ``Path``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        metas = [x for m in args[1:] for x in (getattr(m, "metadata", None) or [m])]  # Field(ge=1) holds Ge(1)
        limits = [c for c in (_constraint(m) for m in metas) if c]
        return _type_text(args[0]) + (f" {', '.join(limits)}" if limits else "")
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_text(a) for a in args)
    if annotation is type(None):
        return "None"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else _type_text(a) for a in args)
        return f"{name}[{inner}]" if args else name
    return getattr(annotation, "__name__", str(annotation)).replace("typing.", "")


def _type_name(annotation: Any) -> str:
    return _type_text(annotation).replace("|", "\\|")


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
        lines += _rows(section, model)
        lines.append("")
    return "\n".join(lines)


def _rows(prefix: str, model: type[BaseModel]) -> list[str]:
    """One row per key; a nested section (``prep.split``) gets a row of its own, then one row per key of it."""
    rows = []
    for name, sub in model.model_fields.items():
        key, annotation = f"{prefix}.{name}", sub.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.append(f"| `{key}` | section | | {sub.description} The keys below. |")
            rows += _rows(key, annotation)
        else:
            rows.append(f"| `{key}` | `{_type_name(annotation)}` | {_default(sub)} | {sub.description} |")
    return rows
