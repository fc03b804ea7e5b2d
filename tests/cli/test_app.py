"""The command line: help for every command, one-line errors with the right exit codes, precedence."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from ssmseg.cli.app import app

runner = CliRunner()


def invoke(*args: str, env: dict | None = None):
    return runner.invoke(app, list(args), env=env)


def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    first = result.output.strip().splitlines()[0]
    assert first.startswith("error: "), result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["config"],
        ["config", "show"],
        ["config", "validate"],
        ["config", "presets"],
        ["config", "reference"],
        ["doctor"],
        ["prep"],
        ["eval"],
        ["train"],
        ["cv"],
        ["models"],
        ["report"],
        ["sweep-steps"],
        ["export"],
    ],
)
def test_every_command_has_help(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert " ".join(command) in usage and "--help" in result.output, result.output
    for option in OPTIONS.get(" ".join(command), ()):  # each command documents its own options
        assert option in result.output, (option, result.output)


OPTIONS = {
    "train": ("--resume", "--force", "--init", "--preset", "--set"),
    "cv": ("--folds", "--force"),
    "eval": ("--input", "--mask", "--dataset", "--out"),
    "prep": ("--out", "--check", "--synthetic"),
    "models": ("--bands", "--classes"),
    "export": ("--format", "--out"),
    "sweep-steps": ("--fields",),
    "report": ("--out",),
    "config show": ("--preset", "--set"),
}


def test_root_lists_commands_and_version():
    result = invoke("--help")
    for name in ("config", "doctor"):
        assert name in result.output
    from ssmseg import __version__

    assert invoke("--version").output.strip() == f"ssmseg {__version__}"


def test_unknown_option_is_one_line_usage_error():
    result = invoke("config", "show", "--nope")
    assert_one_line_error(result, 2, "No such option", "--help")
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_command_is_usage_error():
    assert_one_line_error(invoke("trian"), 2, "No such command")


def test_unknown_preset_lists_available():
    result = invoke("config", "show", "--preset", "fats")
    assert_one_line_error(result, 2, "unknown preset 'fats'", "did you mean 'fast'", "default")


def test_missing_config_file(tmp_path):
    result = invoke("config", "show", "--config", str(tmp_path / "absent.yaml"))
    assert_one_line_error(result, 2, "absent.yaml", "does not exist")


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: [1, 2\nmodel: {}\n")
    result = invoke("config", "validate", str(bad))
    assert_one_line_error(result, 2, "bad.yaml:", "YAML syntax error")
    line_col = result.output.split("bad.yaml:")[1].split(":")[:2]
    assert all(part.isdigit() for part in line_col), result.output


def test_all_config_problems_reported_at_once(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  lrr: 0.1\ntrain:\n  epochs: 0\nmodel:\n  widht: 3\n")
    result = invoke("config", "validate", str(cfg))
    assert_one_line_error(result, 2, "3 problems")
    assert "optim.lrr: unknown key" in result.output and "did you mean optim.lr?" in result.output
    assert "model.widht: unknown key" in result.output and "did you mean model.width?" in result.output
    assert "train.epochs" in result.output
    assert f"from {cfg}" in result.output


def test_cross_field_rule(tmp_path):
    result = invoke("config", "show", "--set", "data.crop_size=64", "--set", "eval.window=16")
    assert_one_line_error(result, 2, "eval.window", "under half of data.crop_size")


def test_bad_set_syntax():
    assert_one_line_error(invoke("config", "show", "--set", "optim.lr"), 2, "dotted.key=value")


def test_validate_ok(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("optim:\n  lr: 0.01\n")
    result = invoke("config", "validate", str(cfg))
    assert result.exit_code == 0 and "valid" in result.output and "error" not in result.output
    cfg.write_text("optim:\n  lr: -1\n")
    assert_one_line_error(invoke("config", "validate", str(cfg)), 2, "optim.lr")


def test_precedence_defaults_preset_file_set_explicit(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("optim:\n  lr: 0.5\ntrain:\n  epochs: 7\nruntime:\n  seed: 11\n  device: cpu\n")
    args = ["config", "show", "--preset", "fast", "--config", str(cfg)]
    shown = yaml.safe_load(invoke(*args, "--set", "train.epochs=9", "--set", "runtime.seed=12", "--seed", "13").output)
    assert shown["model"]["width"] == 16  # preset over defaults
    assert shown["optim"]["lr"] == 0.5  # file over preset
    assert shown["train"]["epochs"] == 9  # --set over file
    assert shown["runtime"]["seed"] == 13  # explicit option over --set
    assert shown["runtime"]["device"] == "cpu"
    assert shown["optim"]["weight_decay"] == 1e-4  # untouched default


def test_show_prints_exactly_what_validates(tmp_path):
    shown = invoke("config", "show", "--preset", "fast").output
    saved = tmp_path / "resolved.yaml"
    saved.write_text(shown)
    again = invoke("config", "show", "--config", str(saved)).output
    assert again == shown


def test_runtime_error_exit_code_and_debug_traceback(monkeypatch):
    from ssmseg.errors import InputError

    def boom():
        raise InputError("scene.tif is unreadable; check the file")

    monkeypatch.setattr("ssmseg.doctor.collect", boom)
    assert_one_line_error(invoke("doctor"), 1, "scene.tif is unreadable")
    debug = invoke("--debug", "doctor")
    assert debug.exit_code == 1 and "Traceback" in debug.output
    env_debug = invoke("doctor", env={"SSMSEG_DEBUG": "1"})
    assert "Traceback" in env_debug.output


def test_unexpected_exception_is_one_line_without_traceback(monkeypatch):
    monkeypatch.setattr("ssmseg.doctor.collect", lambda: 1 / 0)
    assert_one_line_error(invoke("doctor"), 1, "ZeroDivisionError", "--debug")


def test_doctor_reports_scan_backend():
    result = invoke("doctor")
    assert result.exit_code == 0, result.output
    for item in ("torch", "mamba-ssm", "scan backend on cpu", "GDAL", "cpu threads"):
        assert item in result.output


def test_prep_help_and_bad_input(tmp_path):
    result = invoke(
        "prep",
        "--out",
        str(tmp_path / "ds"),
        "--set",
        f"prep.images=[{tmp_path}/none.tif]",
        "--set",
        f"prep.masks=[{tmp_path}/none.tif]",
    )
    assert_one_line_error(result, 1, "matches no file")
    assert not (tmp_path / "ds").exists()
    assert_one_line_error(invoke("prep", "--synthetic", "lidar"), 2, "hyperspectral, rgb or sinusoids")
    assert_one_line_error(invoke("prep"), 2, "--out")


def test_prep_check_reports_problems_and_exit_code(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"prep:\n  images: [{tmp_path}/x.tif]\n  masks: [{tmp_path}/x.tif]\n")
    result = invoke("prep", "--check", str(cfg))
    assert result.exit_code == 1 and "problem:" in result.output and "Traceback" not in result.output
    assert "x.tif" in result.output and "matches no file" in result.output


def test_train_cv_models_help_and_errors(tmp_path):
    assert_one_line_error(
        invoke("train", "--set", "model.name=segnet", "--set", f"data.dataset={tmp_path}/nope", "--device", "cpu"),
        1,
        "does not exist",
    )
    assert_one_line_error(invoke("train", "--resume", str(tmp_path)), 1, "not a run folder (no config.yaml)")
    assert_one_line_error(invoke("train", "--resume", str(tmp_path / "nope")), 1, "run folder", "does not exist")
    assert "--config" not in invoke("train", "--resume", str(tmp_path / "nope")).output
    result = invoke("models")
    assert result.exit_code == 0 and "ssmu_net" in result.output and "micro_segformer" in result.output


def test_unknown_model_lists_valid_ones(synthetic_dataset, tmp_path):
    result = invoke(
        "train",
        "--set",
        "model.name=segnet",
        "--set",
        f"data.dataset={synthetic_dataset}",
        "--set",
        "data.crop_size=16",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
    )
    assert_one_line_error(result, 2, "unknown model 'segnet'", "ssmu_net")


def test_eval_corrupt_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"junk")
    assert_one_line_error(invoke("eval", str(bad)), 1, "corrupt")
    assert_one_line_error(invoke("eval", str(tmp_path / "missing")), 1, "does not exist")


def test_python_dash_m_of_the_app_module_runs_the_command_line():
    """``python -m ssmseg.cli.app`` ran nothing and exited 0; it runs the CLI like ``python -m ssmseg``."""
    import subprocess
    import sys

    for module in ("ssmseg", "ssmseg.cli.app"):
        done = subprocess.run(
            [sys.executable, "-m", module, "config", "presets"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0 and "fast" in done.stdout, (module, done.stdout, done.stderr)
