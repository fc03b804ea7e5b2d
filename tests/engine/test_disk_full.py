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


# --- GeoTIFFs written through GDAL (eval --input, the synthetic scenes prep writes) ---------------------------


def _scenes(tmp_path, *names, size=64):
    from tests.data.helpers import write_tif

    rng = np.random.default_rng(0)
    return [write_tif(tmp_path / f"{n}.tif", rng.integers(0, 255, (3, size, size), dtype=np.uint8)) for n in names]


def test_eval_input_when_the_disk_fills_mid_geotiff(tmp_path, monkeypatch):
    """The disk fills while the second scene's prediction is written (rasterio's write raises ENOSPC with no file
    name): one line naming that GeoTIFF under --out, the first scene kept, no partial file of the second."""
    import rasterio.io

    from ssmseg.experiments import evaluate as ev
    from tests.experiments.test_evaluate import make_checkpoint

    a, b = _scenes(tmp_path, "a", "b")
    checkpoint = make_checkpoint(tmp_path)
    real, calls = rasterio.io.DatasetWriter.write, []

    def write(self, *args, **kwargs):
        calls.append(self.name)
        if "b_pred" in self.name and sum("b_pred" in c for c in calls) == 2:  # mid-way through scene b
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", write)
    cfg = build_config(explicit={"eval": {"window": 32, "overlap": 0.0}, "runtime": {"device": "cpu"}})
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        ev.evaluate(cfg, checkpoint, out, [a, b], [], None)
    text = _one_line(err, out / "b_pred.tif")
    assert "scene 2 of 2" in text and ".partial" not in text
    assert {"a_pred.tif", "a_confidence.tif"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.rglob("b_*")]


def test_a_geotiff_gdal_truncates_silently_is_caught(tmp_path):
    """GDAL reports a write past a file-size limit only on stderr and leaves a truncated file; the scene's
    prediction is read back, removed, and the error names it (a real GDAL failure: RLIMIT_FSIZE in a child)."""
    import subprocess
    import sys
    import textwrap

    from tests.experiments.test_evaluate import make_checkpoint

    (a,) = _scenes(tmp_path, "a", size=512)
    checkpoint = make_checkpoint(tmp_path)
    out = tmp_path / "out"
    code = textwrap.dedent(f"""
        import resource, signal
        from ssmseg.config import build_config
        from ssmseg.experiments import evaluate as ev
        from ssmseg.errors import InputError
        cfg = build_config(explicit={{"eval": {{"window": 64, "save_png": False}}, "runtime": {{"device": "cpu"}}}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            ev.evaluate(cfg, {str(checkpoint)!r}, {str(out)!r}, [{str(a)!r}], [], None)
        except InputError as exc:
            print("ERROR", exc)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("ERROR"))
    assert f"'{out / 'a_'}" in line and ".tif'" in line and "\n" not in line, done.stdout + done.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_geotiff_written_names_the_file_and_removes_it(tmp_path, monkeypatch):
    import rasterio

    from ssmseg import geotiff

    path = tmp_path / "x.tif"
    with pytest.raises(OSError) as err, geotiff.written(path):
        with rasterio.open(path, "w", driver="GTiff", height=8, width=8, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 8, 8), np.uint8))
        path.write_bytes(path.read_bytes()[:100])  # truncated after close, as GDAL leaves it
    assert err.value.filename == str(path) and not path.exists()
    monkeypatch.setattr(geotiff.shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    with pytest.raises(OSError) as err, geotiff.written(path):
        path.write_bytes(b"II*\0")
    assert err.value.errno == errno.ENOSPC and not path.exists()
    assert "no space is left" in str(outputs.io_error(err.value)) and str(path) in str(outputs.io_error(err.value))


def test_prep_synthetic_when_the_disk_fills_mid_geotiff_leaves_no_scene(tmp_path, monkeypatch):
    """prep --synthetic writes its scene as GeoTIFFs into the cache: a full disk there is one line naming the
    cache and the file, and no scene file (partial or renamed) is left to be taken for a complete one next time."""
    import rasterio.io
    from typer.testing import CliRunner

    from ssmseg.cli.app import app

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", full)
    cache = tmp_path / "cache"
    result = CliRunner().invoke(app, ["prep", "--synthetic", "rgb"], env={"SSMSEG_CACHE_DIR": str(cache)})
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert f"'{cache}'" in errors[0] and "No space left on device" in errors[0] and "scene.tmp.tif" in errors[0]
    assert not list(cache.rglob("*.tif"))
