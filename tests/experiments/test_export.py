"""Export: Mamba models to ONNX and TorchScript at any image size within the stated tolerance, files that run
without ssmseg, the fixed-size fallback, and ``ssmseg eval`` of an exported model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from ssmseg.config import build_config
from ssmseg.config.schema import ModelConfig
from ssmseg.data.prepare import prepare
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import InputError
from ssmseg.experiments.export import TOLERANCE, export_model
from ssmseg.experiments.exported import ExportedModel, load_state
from ssmseg.experiments.train import train
from ssmseg.models import build_model
from ssmseg.ssm.reference import selective_scan_reference
from ssmseg.ssm.traced import selective_scan_traced
from tests.cli.conftest import assert_one_line_error, invoke
from tests.data.helpers import prep_config, scene

TINY = {
    "cmt_unet": {"width": 8, "depth": 2, "d_state": 4, "window": 4},
    "ssmu_net": {"width": 8, "depth": 2, "d_state": 4, "n_filters": 4},
    "micro_segformer": {"width": 8, "depth": 2},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A cmt_unet trained one epoch on a tiny scene, and checkpoints of the other models beside it."""
    root = tmp_path_factory.mktemp("export")
    scene(root / "src", size=48)
    dataset = prepare(prep_config(root / "src"), root / "ds").out
    cfg = build_config(
        explicit={
            "data": {"dataset": str(dataset), "crop_size": 16, "batch_size": 4, "max_patches": 8},
            "model": {"name": "cmt_unet", **TINY["cmt_unet"]},
            "train": {"epochs": 1},
            "eval": {"window": 24},
            "schedule": {"warmup_epochs": 0},
            "runtime": {"out_dir": str(root / "runs"), "name": "cmt_unet", "device": "cpu"},
        }
    )
    out = {"cmt_unet": train(cfg).run_dir, "root": root}
    state = ckpt.load(out["cmt_unet"])
    for name in ("ssmu_net", "micro_segformer"):
        model = build_model(ModelConfig(name=name, **TINY[name]), state["in_channels"], state["num_classes"])
        config = {**state["config"], "model": {**ModelConfig(name=name, **TINY[name]).model_dump(mode="json")}}
        ckpt.save(
            {**state, "model": model.state_dict(), "config": config, "model_name": name},
            root / name / "checkpoints" / "best.pt",
        )
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def cmt_onnx(runs):
    pytest.importorskip("onnxruntime")
    return export_model(runs["cmt_unet"], "onnx")


def test_traced_scan_equals_the_reference_at_any_length():
    gen = torch.Generator().manual_seed(0)
    for L in (1, 7, 50):
        u, dt, z = (torch.randn(2, 6, L, generator=gen) for _ in range(3))
        A, (B, C) = -torch.rand(6, 4, generator=gen), (torch.randn(2, 2, 4, L, generator=gen) for _ in range(2))
        D, bias = torch.randn(6, generator=gen), torch.randn(6, generator=gen)
        ref = selective_scan_reference(u, dt, A, B, C, D, z, bias, True, True)
        got = selective_scan_traced(u, dt, A, B, C, D, z, bias, True, True)
        for r, g in zip(ref, got, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


def _eager(source):
    from ssmseg.tasks.segmentation.evaluate import load_model

    return load_model(ckpt.load(source), torch.device("cpu"))


def _check_any_size(result, source, name):
    exported = result.meta["exported"]
    assert exported["input"]["size"] == "any" and exported["check"]["relative_diff"] <= TOLERANCE
    assert exported["check"]["sizes"] == [[16, 16], [11, 21], [24, 24]]  # crop, odd rectangle, eval.window
    assert result.out == source / "export" / exported["format"] and (result.out / "export.json").is_file()
    meta = load_state(result.out)  # eval's view: the metadata read back from the file
    assert meta["normalization"]["offset"] and meta["classes"] == ["c0", "c1", "c2"] and meta["model_name"] == name
    assert meta["selected_on"] == ckpt.load(source)["selected_on"]  # what chose the checkpoint travels with it
    x = torch.randn(1, 3, 20, 28)  # a size the check did not use
    with torch.no_grad():
        want = _eager(source)(x)
        got = ExportedModel(result.file, meta, torch.device("cpu"))(x)
    assert (got - want).abs().max() <= TOLERANCE * max(1.0, float(want.abs().max()))


def test_cmt_unet_exports_to_onnx_for_any_size_within_the_tolerance(runs, cmt_onnx):
    _check_any_size(cmt_onnx, runs["cmt_unet"], "cmt_unet")


def test_ssmu_net_exports_to_onnx_for_any_size_within_the_tolerance(runs):
    pytest.importorskip("onnxruntime")
    _check_any_size(export_model(runs["ssmu_net"], "onnx"), runs["ssmu_net"], "ssmu_net")


@pytest.mark.slow  # TorchScript's executor re-profiles every new input size: seconds per call
def test_cmt_unet_exports_to_torchscript_for_any_size_within_the_tolerance(runs):
    _check_any_size(export_model(runs["cmt_unet"], "torchscript"), runs["cmt_unet"], "cmt_unet")


@pytest.mark.slow  # a TorchScript export and a fresh interpreter
def test_an_export_runs_without_ssmseg(runs, cmt_onnx):
    onnx_file = cmt_onnx.file
    ts_file = export_model(runs["cmt_unet"], "torchscript", runs["root"] / "ts").file
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, onnxruntime, torch
        raw = np.random.default_rng(0).uniform(0, 300, (1, 3, 24, 24)).astype(np.float32)
        session = onnxruntime.InferenceSession({str(onnx_file)!r})
        meta = json.loads(session.get_modelmeta().custom_metadata_map["ssmseg"])
        norm = meta["normalization"]
        offset, scale = (np.array(norm[k], np.float32)[:, None, None] for k in ("offset", "scale"))
        x = (raw - offset) / scale
        a = session.run(None, {{"image": x.astype(np.float32)}})[0]
        extra = {{"ssmseg": ""}}
        module = torch.jit.load({str(ts_file)!r}, _extra_files=extra)
        b = module(torch.from_numpy(x.astype(np.float32))).detach().numpy()
        assert json.loads(extra["ssmseg"])["classes"] == meta["classes"]
        print(a.shape, float(np.abs(a - b).max()), "ssmseg" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd="/", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    shape, diff, imported = done.stdout.split(") ")[0] + ")", *done.stdout.split(") ")[1].split()
    assert shape == "(1, 3, 24, 24)" and float(diff) < 1e-4 and imported == "False", done.stdout


def test_an_attention_model_that_bakes_its_size_is_exported_for_its_crop(runs):
    pytest.importorskip("onnxruntime")
    result = export_model(runs["micro_segformer"], "onnx")
    exported = result.meta["exported"]
    assert exported["input"]["size"] == [16, 16] and "any_size_failed" in exported["check"]
    assert exported["check"]["relative_diff"] <= TOLERANCE
    model = ExportedModel(result.file, load_state(result.file), torch.device("cpu"))
    x = torch.randn(2, 3, 12, 16)
    with torch.no_grad():
        assert model(x).shape == (2, 3, 12, 16)  # reflect-padded to 16x16, cropped back
    with pytest.raises(InputError, match="at most 16x16"):
        model(torch.randn(1, 3, 24, 24))


def test_eval_of_an_export_gives_the_checkpoints_metrics(runs, cmt_onnx):
    run = runs["cmt_unet"]
    result = invoke("eval", run, "--device", "cpu")
    assert result.exit_code == 0, result.output
    result = invoke("eval", run / "export" / "onnx", "--device", "cpu")
    assert result.exit_code == 0, result.output
    mine = json.loads((run / "eval" / "test-onnx" / "metrics.json").read_text())
    theirs = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert mine["confusion_matrix"] == theirs["confusion_matrix"]
    assert mine["evaluated"]["checkpoint"].endswith("model.onnx")
    assert np.isclose(mine["miou"], theirs["miou"])


def test_an_export_that_disagrees_with_pytorch_is_refused_and_nothing_is_written(runs, tmp_path, monkeypatch):
    from ssmseg.experiments import export
    from ssmseg.experiments.export import ExportMismatchError

    real = export._runner

    def off(path, fmt):  # a runtime whose logits are 1% off PyTorch's: far beyond the tolerance
        runner = real(path, fmt)
        return lambda x: runner(x) * 1.01 + 0.01

    monkeypatch.setattr(export, "_runner", off)
    with pytest.raises(ExportMismatchError, match="tolerance"):
        export_model(runs["cmt_unet"], "torchscript", tmp_path / "x")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))
    monkeypatch.setattr(export, "_runner", real)
    done = export_model(runs["cmt_unet"], "torchscript", tmp_path / "x")
    assert done.meta["exported"]["check"]["relative_diff"] <= TOLERANCE


def test_export_cli_states_the_check_and_refuses_what_it_cannot_export(runs, tmp_path):
    pytest.importorskip("onnxruntime")
    result = invoke("export", runs["ssmu_net"], "--out", tmp_path / "x")
    assert result.exit_code == 0, result.output
    assert "max |difference|" in result.output and "argmax agreement 100" in result.output
    assert (tmp_path / "x" / "model.onnx").is_file()
    assert_one_line_error(invoke("export", runs["cmt_unet"], "--format", "tflite"), 2, "onnx or torchscript")
    state = ckpt.load(runs["cmt_unet"])
    ckpt.save({**state, "task": "reconstruction"}, tmp_path / "field.pt")
    assert_one_line_error(invoke("export", tmp_path / "field.pt"), 1, "reconstruction")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert_one_line_error(invoke("export", runs["cmt_unet"], "--out", tmp_path / "mine"), 1, "notes.txt")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
