"""A tiny world shared by the end-to-end CLI tests (made once per session): one georeferenced scene, the
dataset prepared from it, and a one-epoch run trained on it. Tests that change a run work on a copy."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ssmseg.cli.app import app
from ssmseg.data.prepare import prepare
from tests.data.helpers import prep_config, scene

runner = CliRunner()

# A model and schedule small enough that one epoch takes well under a second on 2 CPU cores.
TINY = [
    "--set",
    "model.name=unet",
    "--set",
    "model.width=4",
    "--set",
    "model.depth=1",
    "--set",
    "train.epochs=1",
    "--set",
    "schedule.warmup_epochs=0",
    "--set",
    "data.batch_size=4",
    "--device",
    "cpu",
]


def invoke(*args, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_one_line_error(result, code: int, *needles: str) -> None:
    """Exit ``code``, no traceback, no 'unexpected ... (a bug)', one ``error:`` line holding every needle."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``roots`` with (size, mtime) for files: what a command changed shows as a difference."""
    out = {}
    for root in roots:
        for dirpath, dirs, files in os.walk(root):
            for name in dirs:
                out[os.path.join(dirpath, name)] = (0, 0)
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                out[os.path.join(dirpath, name)] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class World:
    root: Path
    src: Path  # img/a.tif and msk/a.tif (48x48, 3 bands, 3 classes)
    dataset: Path  # prepared with 16-px crops, 2 folds
    run: Path  # trained for one epoch: finished

    @property
    def image(self) -> Path:
        return self.src / "img" / "a.tif"

    @property
    def mask(self) -> Path:
        return self.src / "msk" / "a.tif"

    def prep_yaml(self, path: Path, **prep) -> Path:
        settings = {
            "images": [str(self.src / "img" / "*.tif")],
            "masks": [str(self.src / "msk" / "*.tif")],
            "classes": ["c0", "c1", "c2"],
            "split": {"block_size": 16, "folds": 2},
            **prep,
        }
        path.write_text(yaml.safe_dump({"data": {"crop_size": 16}, "prep": settings}))
        return path

    def copy_run(self, dest: Path) -> Path:
        shutil.copytree(self.run, dest)
        return dest


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    scene(root / "src", size=48)
    dataset = prepare(prep_config(root / "src"), root / "ds").out
    result = invoke(
        "train", *TINY, "--set", f"data.dataset={dataset}", "--out", root / "runs", "--set", "runtime.name=done"
    )
    assert result.exit_code == 0, result.output
    return World(root, root / "src", dataset, root / "runs" / "done")
