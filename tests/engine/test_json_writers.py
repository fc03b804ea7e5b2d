"""Every JSON file a run writes is valid JSON: NaN and infinities become null, never ``NaN``/``Infinity``."""

from __future__ import annotations

import json
import math

from ssmseg.engine.logging import RunLogger, dumps


def strict(text: str):
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_history_with_infinite_and_nan_values_is_valid_json(tmp_path):
    RunLogger(tmp_path, True).write_history(
        [{"epoch": 1, "val/spec_err": math.inf, "val/psnr": math.nan, "nested": [1.5, -math.inf]}],
        {"best": {"value": 2.0}},
    )
    data = strict((tmp_path / "history.json").read_text())
    assert data["epochs"][0] == {"epoch": 1, "val/spec_err": None, "val/psnr": None, "nested": [1.5, None]}
    assert strict(dumps({"a": (math.nan, 1)})) == {"a": [None, 1]}
