"""Reading folders: tolerant of old and partial files, one-line errors for unreadable ones."""

from __future__ import annotations

import json

import pytest

from ssmseg.errors import InputError
from ssmseg.report.analysis import analyse_run
from ssmseg.report.runs import CV, Eval, Run, Sweep, discover, read_run
from tests.report import shapes


def v1(hist):
    """The old format: epochs, best, monitor (and stop_reason once finished); no per-epoch extras."""
    old = {
        "epochs": [
            {
                k: v
                for k, v in r.items()
                if k not in ("val_seconds", "grad_norm_mean", "grad_norm_max", "peak_memory_mb")
            }
            for r in hist["epochs"]
        ],
        "best": hist["best"],
        "monitor": hist["monitor"],
    }
    return old


def test_format_1_history_is_read_and_what_is_missing_is_said(tmp_path):
    folder = shapes.write_run(tmp_path / "old", v1(shapes.clean()), shapes.config(60, 3))
    run = read_run(folder)
    assert run.format_version is None and run.mode == "max" and run.task == "segmentation"
    assert run.metric_names == sorted(["oa", "miou", "mean_f1", "kappa"])
    text = " ".join(run.missing)
    assert "format 1" in text and "grad_norm_mean" in text and "no stop_reason" in text
    a = analyse_run(run)
    assert a["findings"] == [] and a["summary"]["best_epoch"] == run.best["epoch"]
    assert a["chance"] is None and any("class_counts_val" in m for m in a["missing"])
    assert a["summary"]["parameters"] is None and a["summary"]["model"] == "ssmu_net"  # from config.yaml


def test_run_without_history_is_a_partial_report(tmp_path):
    folder = shapes.write_run(tmp_path / "partial", None, shapes.config(10))
    (found,) = discover(folder)
    assert isinstance(found, Run) and found.records == []
    a = analyse_run(found)
    assert any("no history.json" in m for m in a["missing"]) and a["findings"] == [] and a["stages"] == []


def test_interrupted_run_says_so(tmp_path):
    hist = shapes.clean()
    hist["epochs"] = hist["epochs"][:12]
    hist["stop_reason"] = "interrupted"
    run = read_run(shapes.write_run(tmp_path / "r", hist))
    assert any("'interrupted'" in m and "12 epochs" in m for m in run.missing)
    assert any("no config.yaml" in m for m in run.missing)


def test_unknown_keys_ignored_and_bad_values_are_nan(tmp_path):
    hist = shapes.clean()
    hist["surprise"] = {"x": 1}
    hist["epochs"][5]["val/miou"] = "oops"
    hist["epochs"][6]["new_key"] = 3
    hist["epochs"].append("not a record")
    run = read_run(shapes.write_run(tmp_path / "r", hist))
    a = analyse_run(run)
    assert len(run.records) == 60 and any("not JSON objects" in m for m in run.missing)
    assert a["summary"]["best_epoch"] == hist["best"]["epoch"]


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("history.json", '{"epochs": [', "not valid JSON"),
        ("history.json", "[1, 2]", "not an object"),
        ("history.json", '{"epochs": 3}', "not a list"),
        ("config.yaml", "a: [", "not valid YAML"),
        ("metrics.json", "{", "not valid JSON"),
        ("sweep.json", '{"rows": "x"}', "not a list"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_path(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError) as err:
        discover(tmp_path)
    msg = str(err.value)
    assert needle in msg and str(tmp_path / name) in msg and "\n" not in msg


def test_wrong_types_are_missing_values_not_tracebacks(tmp_path):
    hist = shapes.clean(20, 2)
    hist["metric_names"], hist["best"], hist["run"] = 3, "x", [1]
    hist["epochs"][4]["val/miou"] = {"a": 1}
    a = analyse_run(read_run(shapes.write_run(tmp_path / "r", hist)))
    assert a["summary"]["best_epoch"] is not None and a["summary"]["parameters"] is None
    sweep = shapes.sweep()
    sweep["rows"][0]["solver"], sweep["rows"][1]["nfe"] = ["odd"], "many"
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.json").write_text(json.dumps(sweep))
    from ssmseg.report.analysis import analyse_sweep

    (sw,) = discover(tmp_path / "s")
    assert analyse_sweep(sw)["best"] is not None


def test_a_folder_that_is_nothing_says_what_a_report_needs(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"history.json .* cv_summary.json .* metrics.json .* sweep.json"):
        discover(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        discover(tmp_path / "nope")
    with pytest.raises(InputError, match="is a file"):
        discover(tmp_path / "notes.txt")


def test_discovery_of_cv_eval_sweep_and_outputs_inside_a_run(tmp_path):
    assert isinstance(discover(shapes.write_cv(tmp_path / "cv", [0.7, 0.71]))[0], CV)
    run = shapes.write_run(tmp_path / "run", shapes.clean(), shapes.config(60, 3))
    for name in ("test", "scene"):
        (run / "eval" / name).mkdir(parents=True)
        (run / "eval" / name / "metrics.json").write_text(json.dumps(shapes.seg_metrics()))
    (run / "sweep").mkdir()
    (run / "sweep" / "sweep.json").write_text(json.dumps(shapes.sweep()))
    (found,) = discover(run)
    assert [e.name for e in found.evals] == ["eval/scene", "eval/test"] and [s.name for s in found.sweeps] == ["sweep"]
    evals = discover(run / "eval")  # a folder of eval outputs
    assert [type(e) for e in evals] == [Eval, Eval]
    assert isinstance(discover(run / "sweep")[0], Sweep)
    assert isinstance(discover(run / "history.json")[0], Run)  # a file inside a run: its folder
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "metrics.json").write_text(json.dumps(shapes.recon_metrics()))
    assert discover(tmp_path / "rec")[0].task == "reconstruction"
