"""A plain, non-editable install ships every module and the presets, found from any working directory."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed in this environment; cannot build the wheel offline")
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return next(out.glob("ssmseg-*.whl"))


def test_wheel_holds_every_module_and_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "ssmseg").rglob("*.py"):
        assert path.relative_to(REPO).as_posix() in names, f"{path} missing from the wheel (pyproject packages?)"
    for preset in (REPO / "presets").glob("*.yaml"):
        assert f"ssmseg/presets/{preset.name}" in names
    assert "ssmseg/ssm/csrc/selective_scan.c" in names
    for template in (REPO / "ssmseg" / "report" / "templates").glob("*.j2"):
        assert f"ssmseg/report/templates/{template.name}" in names, f"{template} missing (pyproject package-data?)"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ssmseg = ssmseg.cli.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_finds_presets_from_elsewhere(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    code = "import ssmseg.config as c, ssmseg; print(ssmseg.__file__); print(c.build_config(preset='fast').model.name)"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-2000:]
    where, model = run.stdout.split()
    assert where.startswith(str(target)) and model == "ssmu_net"
