"""Every shipped preset loads, validates and carries its header."""

from __future__ import annotations

import pytest

from ssmseg.config import available_presets, build_config
from ssmseg.config.loading import preset_text
from ssmseg.config.reference import render_reference
from tests.conftest import REPO


def test_presets_found():
    assert {"fast", "default"} <= set(available_presets())


@pytest.mark.parametrize("name", available_presets())
def test_preset_validates_and_has_header(name):
    build_config(preset=name)
    header = [line for line in preset_text(name).splitlines() if line.startswith("#")]
    text = "\n".join(header).lower()
    for word in ("purpose", "hardware", "expected time", "command"):
        assert word in text, f"preset {name} header lacks '{word}'"


def test_fast_preset_matches_the_fast_mode():
    cfg = build_config(preset="fast")
    assert cfg.data.max_patches == 50 and cfg.train.epochs == 10 and cfg.cv.folds == 3
    assert cfg.model.name == "ssmu_net"


def test_config_reference_is_current():
    doc = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert doc == render_reference(), "docs/config.md is stale: run `ssmseg config reference > docs/config.md`"


def test_every_field_has_a_description():
    from pydantic import BaseModel

    from ssmseg.config.schema import Config

    for section, field in Config.model_fields.items():
        assert field.description, section
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, sub in model.model_fields.items():
            assert sub.description, f"{section}.{name} has no description"


def test_config_reference_lists_nested_keys_with_readable_types():
    doc = render_reference()
    for key in ("prep.split.mode", "prep.split.ratios", "prep.split.test", "prep.fields.size", "prep.overlap_px"):
        assert f"| `{key}` |" in doc, key
    assert "| `sweep.steps` | `list[int >= 1, <= 10000]` |" in doc
    for noise in ("FieldInfo", "Annotated", "typing.", "Literal[", "Union[", "SplitConfig"):
        assert noise not in doc, noise
