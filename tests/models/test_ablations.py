"""Ablation switches: each one removes its module, keeps a trainable model, and changes the parameter count
exactly as docs/usage.md says; a switch a model does not read is refused."""

from __future__ import annotations

import re

import pytest
import torch

from ssmseg.config.schema import ModelConfig
from ssmseg.errors import ConfigError
from ssmseg.models import build_model
from ssmseg.models.layers.attention import MultiScaleAttention, WindowAttention
from ssmseg.models.layers.conv import ConvMixBlock
from ssmseg.models.layers.sinc import SincBandFilters
from ssmseg.models.layers.wavelet import WaveletConv
from ssmseg.models.registry import count_parameters
from ssmseg.ssm.ss2d import SS2D
from tests.conftest import REPO

SWITCHES = [  # (model, switch, module type it removes)
    ("cmt_unet", {"msa": False}, MultiScaleAttention),
    ("cmt_unet", {"wavelet": "none"}, WaveletConv),
    ("cmt_unet", {"ss2d": False}, SS2D),
    ("cmt_unet", {"window_attention": False}, WindowAttention),
    ("ssmu_net", {"sinc": False}, SincBandFilters),
    ("ssmu_net", {"ss2d": False}, SS2D),
]


def _has(model: torch.nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(("name", "switch", "kind"), SWITCHES)
def test_switch_removes_its_module_and_still_trains(name, switch, kind):
    assert _has(build_model(ModelConfig(name=name), 5, 3, tiny=True), kind)
    model = build_model(ModelConfig(name=name, **switch), 5, 3, tiny=True)
    assert not _has(model, kind)
    if switch.get("ss2d") is False:
        assert _has(model, ConvMixBlock)
    out = model(torch.randn(2, 5, 16, 16))
    assert out.shape == (2, 3, 16, 16)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _documented() -> list[tuple[str, str, int, int]]:
    text = (REPO / "docs" / "usage.md").read_text(encoding="utf-8")
    section = text.split("## Ablations", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\w+) \| (.+?) \| ([\d,]+) \| (-?[\d,]+) \|$", section, flags=re.M)
    return [(m, sw.strip("`"), int(n.replace(",", "")), int(d.replace(",", ""))) for m, sw, n, d in rows]


def test_parameter_counts_are_as_documented():
    rows = _documented()
    assert len(rows) == 2 + len(SWITCHES)
    for name, switch, count, change in rows:
        key = {} if switch == "(all on)" else dict([switch.removeprefix("model.").split("=")])
        cfg = ModelConfig.model_validate({"name": name, **key})  # "false"/"none" validate as the config would
        full = count_parameters(build_model(ModelConfig(name=name), 32, 5))
        got = count_parameters(build_model(cfg, 32, 5))
        assert (got, got - full) == (count, change), f"{name} {switch}: {got} ({got - full:+}) in the code"
        if key:
            assert change < 0, f"{name} {switch} should remove parameters"


@pytest.mark.parametrize(
    ("name", "switch"),
    [
        ("unet", {"msa": False}),
        ("ssmu_net", {"wavelet": "none"}),
        ("cmt_unet", {"sinc": False}),
        ("micro_segformer", {"ss2d": False}),
        ("field_unet", {"msa": False}),
    ],
)
def test_a_switch_the_model_does_not_read_is_refused(name, switch):
    key = next(iter(switch))
    with pytest.raises(ConfigError, match=f"model.{key} is not read by {name}"):
        build_model(ModelConfig(name=name, **switch), 3, 2)
