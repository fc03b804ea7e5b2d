"""A full disk (ENOSPC, raised as write() raises it: with no file name) while writing a checkpoint, eval outputs or
a report: one line that names the path the user knows, and nothing partial left behind."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from ssmseg import outputs
from ssmseg.config import build_config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import InputError


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # no file name, as write() reports it


def _one_line(err: pytest.ExceptionInfo, path) -> str:
    text = str(err.value)
    assert "\n" not in text and f"'{path}'" in text and "no space is left" in text, text
    return text


def test_checkpoint_on_a_full_disk_names_it_and_keeps_the_previous(tmp_path, monkeypatch):
    path = tmp_path / "run" / "checkpoints" / "latest.pt"
    ckpt.save({"model": {"w": torch.zeros(2)}}, path)
    monkeypatch.setattr(outputs, "_write_file", _enospc)
    with pytest.raises(InputError) as err:
        ckpt.save({"model": {"w": torch.ones(2)}}, path)
    assert "previous checkpoint is kept" in _one_line(err, path)
    monkeypatch.undo()
    assert torch.equal(ckpt.load(path)["model"]["w"], torch.zeros(2))
    assert sorted(p.name for p in path.parent.iterdir()) == ["latest.pt"]


def test_eval_on_a_full_disk_names_the_output_folder(tmp_path, monkeypatch):
    from ssmseg.experiments import evaluate as ev
    from tests.data.helpers import write_tif
    from tests.experiments.test_evaluate import make_checkpoint

    src = write_tif(tmp_path / "s.tif", np.ones((3, 40, 40), np.uint8))
    checkpoint = make_checkpoint(tmp_path)
    monkeypatch.setattr(ev.provenance, "record_evaluated", _enospc)
    cfg = build_config(explicit={"eval": {"window": 32}, "runtime": {"device": "cpu"}})
    with pytest.raises(InputError) as err:
        ev.evaluate(cfg, checkpoint, tmp_path / "out", [src], [], None)
    _one_line(err, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_report_on_a_full_disk_names_the_report_folder(tmp_path, monkeypatch):
    from ssmseg.report import make_report, render
    from tests.report import shapes

    run = shapes.write_run(tmp_path / "run", shapes.clean(), shapes.config(20, 2))
    monkeypatch.setattr(render, "render", _enospc)
    with pytest.raises(InputError) as err:
        make_report([run])
    _one_line(err, run / "report")
    assert not [p.name for p in run.iterdir() if p.name.startswith((".report", "report"))]
