"""ssmseg sweep-steps with a field model whose velocity has a closed form, so the numbers can be checked
against theory: fields of i.i.d. N(MU, SIGMA^2) pixels (in data units), and the exact flow-matching velocity
for them, which carries noise z to MU + SIGMA z (in data units) and whose one Euler step from t = 0 lands on
the posterior mean MU."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from ssmseg.cli.app import app
from ssmseg.config import build_config, dump_config
from ssmseg.data.fields import FieldStats, observed_masks
from ssmseg.data.prepare_fields import prepare_fields
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import UsageError
from ssmseg.experiments import sweep as sw
from ssmseg.models import registry
from ssmseg.tasks.reconstruction import sweep as rsw
from ssmseg.tasks.reconstruction import sweep_grid
from ssmseg.tasks.reconstruction.metrics import psnr, sample_statistics
from ssmseg.tasks.reconstruction.sampling import sample_noise
from ssmseg.tasks.reconstruction.sweep_conclusions import conclude, expected_coverage
from ssmseg.tasks.reconstruction.sweep_fields import load_fields
from ssmseg.tasks.reconstruction.sweep_plan import FULL_GRID, plan_line, planned_calls, reference_tolerance

MU, SIGMA = 5.0, 2.0
SIZE = 16
runner = CliRunner()


class GaussianFlow(nn.Module):
    """The exact velocity E[x1 - x0 | x_t] for x1 ~ N(m, s^2) per pixel and x0 ~ N(0, 1), in normalised units
    (it ignores the observed pixels: with independent pixels they say nothing about the others)."""

    def __init__(self, m: float, s: float) -> None:
        super().__init__()
        self.m, self.s = m, s

    def forward(self, x, t, values, mask):
        assert x.shape == values.shape and mask.shape == (x.shape[0], 1, *x.shape[2:]) and t.shape == (x.shape[0],)
        seen = values[mask.expand_as(values) > 0]  # observed values arrive normalised like the model's training data
        assert abs(float(seen.mean()) - self.m) < 4 * self.s / len(seen) ** 0.5 + 0.05, float(seen.mean())
        tb = t.to(x.dtype).reshape(-1, 1, 1, 1)
        var = tb**2 * self.s**2 + (1 - tb) ** 2
        return self.m + (tb * self.s**2 - (1 - tb)) * (x - tb * self.m) / var


def write_fields(path, n: int, channels: int = 1, seed: int = 0):
    fields = np.random.default_rng(seed).normal(MU, SIGMA, (n, channels, SIZE, SIZE)).astype(np.float32)
    np.save(path, fields)
    return path


def prep(tmp_path, name: str, channels: int = 1):
    stack = write_fields(tmp_path / f"{name}.npy", 30, channels)
    cfg = build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"images": [str(stack)]}})
    return prepare_fields(cfg, tmp_path / name).out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return prep(tmp_path_factory.mktemp("fields"), "gauss")


@pytest.fixture
def run(tmp_path, dataset, monkeypatch):
    """A reconstruction run folder whose checkpoint holds the closed-form model (registered for the test)."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    stats = FieldStats.from_dict(manifest["stats"]["train"])
    m, s = (MU - stats.mean[0]) / stats.std[0], SIGMA / stats.std[0]
    monkeypatch.setitem(
        registry.MODELS,
        "gauss_flow",
        registry.Entry(
            lambda cfg, c, k: GaussianFlow(m, s), {}, "closed-form test flow", task="reconstruction", classes=False
        ),
    )
    cfg = build_config(
        explicit={
            "task": {"name": "reconstruction"},
            "model": {"name": "gauss_flow"},
            "reconstruction": {"observed": 0.2},
        }
    )
    state = {
        "task": "reconstruction",
        "config": yaml.safe_load(dump_config(cfg)),
        "model": {},
        "in_channels": 1,
        "stats": stats.to_dict(),
        "stats_key": "train",
        "dataset": str(dataset),
        "fold": None,
        "field_size": [SIZE, SIZE],
        "epoch": 1,
    }
    folder = tmp_path / "run"
    ckpt.save(state, folder / "checkpoints" / "best.pt")
    (folder / "config.yaml").write_text(dump_config(cfg))
    return folder


def sweep_config(**sweep):
    base = {
        "solvers": ["euler", "midpoint", "heun", "rk4", "dopri5"],
        "steps": [1, 2, 8],
        "samples": 8,
        "baselines": ["mean", "linear"],
        "examples": 2,
        "batch_size": 4,
    }
    return build_config(
        explicit={
            "task": {"name": "reconstruction"},
            "model": {"name": "gauss_flow"},
            "reconstruction": {"observed": 0.2},
            "sweep": {**base, **sweep},
            "runtime": {"device": "cpu"},
        }
    )


def row(result, solver, steps):
    return next(r for r in result.rows if r["solver"] == solver and r["steps"] == steps)


def test_numbers_match_theory_for_an_exact_velocity(run, dataset):
    result = sw.sweep_steps(sweep_config(), run)
    k = 8
    # NFE is counted through the model wrapper: stages per step for the fixed-step solvers
    for solver, per in (("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)):
        for steps in (1, 2, 8):
            assert row(result, solver, steps)["nfe"] == per * steps
    ref = row(result, "dopri5", None)
    assert ref["nfe"] >= 8 and ref["solver_error"] == 0.0  # dopri5 at the reference tolerances is the reference
    assert result.protocol["reference"]["nfe"] == ref["nfe"]
    solves = k * math.ceil(result.protocol["fields"] / 4)  # K samples per batch of 4 fields, each solved apart
    assert result.timing["model_calls"] == solves * sum(r["nfe"] for r in result.rows)  # dopri5's row: the reference
    # one Euler step from t = 0 is the posterior mean MU: all K samples equal, spread 0
    one = row(result, "euler", 1)
    assert one["psnr_sample"] == pytest.approx(one["psnr_mean"], abs=1e-6) and one["spread"] < 1e-5
    # the solver error falls with the order of the solver; rk4 at 8 steps is at the reference
    assert row(result, "rk4", 8)["solver_error"] < 1e-3 < row(result, "euler", 8)["solver_error"]
    assert row(result, "euler", 8)["solver_error"] < row(result, "euler", 2)["solver_error"]
    # the reference samples are MU + SIGMA z in data units: recompute their PSNR from the noise directly
    idx = torch.tensor(result.protocol["field_indices"])
    truth = torch.from_numpy(np.load(dataset / "fields.npy")[idx.numpy()]).double()
    obs = torch.from_numpy(np.concatenate([observed_masks(1, SIZE, SIZE, 0.2, 0, int(j)) for j in idx]))[:, None]
    exact = MU + SIGMA * sample_noise(idx, k, (1, SIZE, SIZE), 0).double()
    exact = torch.where(obs, truth, exact)
    data_range = result.protocol["data_range"]
    want = float(torch.stack([psnr(e, truth, data_range, obs) for e in exact]).mean())
    assert ref["psnr_sample"] == pytest.approx(want, abs=0.02)
    assert ref["psnr_mean"] == pytest.approx(float(psnr(exact.mean(0), truth, data_range, obs).mean()), abs=0.02)
    # exact samples of an independent Gaussian: sample MSE 2 SIGMA^2, mean of K (1 + 1/K) SIGMA^2
    assert ref["psnr_mean"] - ref["psnr_sample"] == pytest.approx(10 * math.log10(2 / (1 + 1 / k)), abs=0.5)
    assert ref["rmse_sample"] == pytest.approx(SIGMA * math.sqrt(2), rel=0.1)
    assert ref["spread"] == pytest.approx(SIGMA, rel=0.15)
    assert ref["coverage90"] == pytest.approx(expected_coverage(k), abs=0.06)
    assert float(sample_statistics(exact, truth, obs)["coverage"].mean()) == pytest.approx(ref["coverage90"], abs=0.01)
    # the mean baseline predicts about MU: its error is about SIGMA
    mean_base = next(b for b in result.baselines if b["name"] == "mean")
    assert mean_base["rmse"] == pytest.approx(SIGMA, rel=0.15)


def test_outputs_folder_json_csv_figures_and_report(run):
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    cfg = sweep_config(solvers=["euler", "heun"], steps=[1, 4], samples=2)
    first = sw.sweep_steps(cfg, run)
    second = sw.sweep_steps(cfg, run)
    assert (first.out, second.out) == (run / "sweep", run / "sweep-2")
    assert not [p for p in run.iterdir() if p.name.endswith(".partial")]
    kept = sorted(p.relative_to(run) for p in run.rglob("*") if not p.relative_to(run).parts[0].startswith("sweep"))
    assert kept == before  # nothing we did not write was touched
    files = {p.name for p in first.out.iterdir()}
    assert files == {"sweep.json", "sweep.csv", "psnr_vs_nfe.png", "examples.png", ".ssmseg.json"}
    marker = json.loads((first.out / ".ssmseg.json").read_text())
    assert marker["kind"] == "sweep" and ".ssmseg.json" not in marker["files"] and "sweep.json" in marker["files"]
    data = json.loads((first.out / "sweep.json").read_text())
    assert data["protocol"]["samples"] == 2 and data["protocol"]["fractions"] == [0.2]
    assert {"torch", "torchdiffeq", "scipy", "scikit-learn"} <= set(data["protocol"]["versions"])
    assert len(data["rows"]) == 4 and [b["name"] for b in data["baselines"]] == ["mean", "linear"]
    assert data["conclusions"] and data["conclusions"][0].startswith("best setting")
    lines = (first.out / "sweep.csv").read_text().splitlines()
    assert lines[0].startswith("kind,name,steps,nfe") and len(lines) == 1 + 4 + 2
    from ssmseg.report.analysis import analyse_sweep
    from ssmseg.report.runs import discover

    found = discover(run)[0]
    assert [s.name for s in found.sweeps] == ["sweep", "sweep-2"]
    analysis = analyse_sweep(found.sweeps[0])
    assert analysis["best"] is not None and analysis["best_by"] == "psnr_mean"


def test_a_failure_leaves_nothing_behind(run, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("planted")

    monkeypatch.setattr(rsw, "run_baselines", boom)
    with pytest.raises(RuntimeError, match="planted"):
        sw.sweep_steps(sweep_config(steps=[1], solvers=["euler"], samples=1), run)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml"]
    out = run.parent / "given"
    out.mkdir()
    with pytest.raises(RuntimeError, match="planted"):
        sw.sweep_steps(sweep_config(steps=[1], solvers=["euler"], samples=1), run, out=out)
    assert out.is_dir() and not any(out.iterdir())  # the user's empty folder stays, empty
    with pytest.raises(RuntimeError, match="planted"):
        sw.sweep_steps(sweep_config(steps=[1], solvers=["euler"], samples=1), run, out=run.parent / "new" / "sub")
    assert not (run.parent / "new" / "sub").exists()  # a folder created for the sweep goes with it
    assert not [p for p in run.parent.iterdir() if p.name.endswith(".partial")]


def test_all_baselines_on_the_same_pixels(run):
    cfg = sweep_config(
        solvers=["euler"],
        steps=[1],
        samples=1,
        max_fields=2,
        baselines=["mean", "nearest", "linear", "cubic", "rbf", "gp"],
    )
    result = sw.sweep_steps(cfg, run)
    assert [b["name"] for b in result.baselines] == ["mean", "nearest", "linear", "cubic", "rbf", "gp"]
    assert all(math.isfinite(b["psnr"]) and b["seconds"] >= 0 for b in result.baselines)
    assert result.protocol["fields"] == 2


def test_conclusions_follow_the_numbers():
    def r(solver, steps, nfe, ps, pm, err, rmse=1.0, cov=0.7):
        return {
            "solver": solver,
            "steps": steps,
            "nfe": nfe,
            "psnr_sample": ps,
            "psnr_mean": pm,
            "solver_error": err,
            "rmse_sample": rmse,
            "coverage90": cov,
        }

    rows = [
        r("euler", 1, 1, 30.0, 30.0, 0.5),
        r("euler", 8, 8, 27.5, 29.6, 0.05),
        r("euler", 16, 16, 27.2, 29.5, 0.2),
        r("euler", 64, 64, 27.0, 29.5, 0.01),
        r("rk4", 1, 4, 26.0, 28.0, 0.2),
        r("rk4", 8, 32, 27.0, 29.5, 0.001),
        r("dopri5", None, 80, 27.0, 29.5, 0.0),
    ]
    lines = conclude(rows, [{"name": "gp", "psnr": 28.0}], 8)
    text = "\n".join(lines)
    assert lines[0].startswith("best setting: euler, 1 step (1 NFE), PSNR 30.00 dB")
    assert "euler: more steps hurt: one sample 30.00 -> 27.00 dB (-3.00)" in text  # the mean of 8 fell 0.5 too
    assert "from 64 steps on, the solver error" in text  # under 10% of 1.0 at 8 steps, not at 16, again at 64
    assert "rk4: more steps helped" in text and "from 8 steps on" in text
    assert "2.50 dB at the most accurate solve (dopri5 (80 NFE))" in text
    assert "exact posterior samples give 2.50" in text
    assert "one Euler step (a posterior-mean estimate): 30.00 dB" in text
    assert (
        "best baseline: gp 28.00 dB; the best mean of 8 is 2.00 dB above it, the best single sample 2.00 dB "
        "above it" in text
    )
    assert "below every baseline" not in text and "-" not in text.split("best baseline")[1]  # no mixed signs
    # one sample and the mean of K disagree: both are said
    mixed = [r("euler", 1, 1, 28.0, 28.0, 0.5), r("euler", 8, 8, 27.0, 28.7, 0.05)]
    assert "euler: more steps hurt one sample but helped the mean of 4" in "\n".join(conclude(mixed, [], 4))
    under = conclude(mixed, [{"name": "mean", "psnr": 29.0}, {"name": "gp", "psnr": 31.0}], 4)
    assert any("below every baseline, mean included (29.00 dB)" in line for line in under), under
    between = conclude(mixed, [{"name": "mean", "psnr": 28.5}, {"name": "gp", "psnr": 31.0}], 4)
    assert not any("below every" in line for line in between)
    assert "too narrow" not in text  # 0.70 is about what K = 8 exact samples give
    assert "peaks" not in text
    rows[1]["psnr_sample"] = 30.5  # above both ends by more than 0.1 dB
    assert "one-sample PSNR peaks at 8 steps (30.50 dB)" in "\n".join(conclude(rows, [], 8))
    rows[-1]["coverage90"] = 0.4
    assert "too narrow" in "\n".join(conclude(rows, [], 8))


def test_expected_coverage_of_exact_samples():
    assert expected_coverage(8) == pytest.approx(0.72, abs=0.02)
    assert expected_coverage(2) < expected_coverage(8) < expected_coverage(64) < 0.9


# ---------------------------------------------------------------------------------------------- bad input


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("error: "), result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_bad_input_is_one_line_exit_2(run, tmp_path):
    one_line_error(invoke("sweep-steps", run, "--set", "sweep.solvers=[euler,rk45]"), "rk45", "dopri5", "midpoint")
    one_line_error(invoke("sweep-steps", run, "--set", "sweep.steps=[0,4]"), "sweep.steps", "greater than or equal")
    one_line_error(invoke("sweep-steps", run, "--samples", "0"), "--samples")
    one_line_error(invoke("sweep-steps", tmp_path / "nothing"), "does not exist")
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    (empty_run / "config.yaml").write_text("{}")
    one_line_error(invoke("sweep-steps", empty_run), "no checkpoint")
    seg = tmp_path / "seg"
    ckpt.save({"model": {}, "config": {}}, seg / "checkpoints" / "best.pt")
    one_line_error(invoke("sweep-steps", seg), "segmentation run", "reconstruction")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    refused = invoke("sweep-steps", run, "--out", full, "--set", "sweep.steps=[1]")  # a folder refusal: exit 1
    assert refused.exit_code == 1 and refused.output.startswith("error: ") and "new or empty folder" in refused.output
    assert (full / "keep.txt").read_text() == "mine" and sorted(p.name for p in full.iterdir()) == ["keep.txt"]
    small = tmp_path / "small.npy"
    np.save(small, np.random.default_rng(0).normal(size=(12, 1, 4, 4)).astype(np.float32))
    tiny = prepare_fields(
        build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"images": [str(small)]}}), tmp_path / "tiny"
    ).out
    one_line_error(invoke("sweep-steps", run, "--fields", tiny, "--set", "sweep.steps=[1]"), "4x4", "at least 6x6")
    two = prep(tmp_path, "two_channels", channels=2)
    one_line_error(invoke("sweep-steps", run, "--fields", two, "--set", "sweep.steps=[1]"), "2 channel(s)", "takes 1")
    assert not (run / "sweep").exists()


def test_cli_prints_table_and_conclusions(run):
    result = invoke(
        "sweep-steps",
        run,
        "--samples",
        "2",
        "--set",
        "sweep.solvers=[euler,rk4]",
        "--set",
        "sweep.steps=[1,2]",
        "--set",
        "sweep.baselines=[mean]",
        "--set",
        "sweep.max_fields=3",
    )
    assert result.exit_code == 0, result.output
    assert "rk4" in result.output and "- best setting:" in result.output
    assert f"wrote {run / 'sweep'}" in result.output.replace("\n", "")
    data = json.loads((run / "sweep" / "sweep.json").read_text())
    assert data["protocol"]["samples"] == 2 and [r["steps"] for r in data["rows"]] == [1, 2, 1, 2]


def test_the_default_grid_is_small_and_its_plan_is_printed_first(run):
    cfg = build_config(explicit={"task": {"name": "reconstruction"}})
    small = planned_calls(cfg, cfg.sweep.max_fields)
    full = build_config(explicit={"task": {"name": "reconstruction"}, "sweep": FULL_GRID})
    assert small <= 1000 < 100 * small <= planned_calls(full, full.sweep.max_fields)
    assert "--full" in plan_line(cfg, 16) and "hours" in plan_line(full, 100)
    assert reference_tolerance(cfg.sweep) == (1e-3, 1e-3)  # fixed steps only: a cheap reference is enough
    assert reference_tolerance(full.sweep) == (full.sweep.atol, full.sweep.rtol)  # dopri5's row is the reference
    result = invoke(
        "sweep-steps", run, "--samples", "1", "--set", "sweep.baselines=[mean]", "--set", "sweep.max_fields=2"
    )
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", " ")
    assert "sweep plan: 8 settings" in text and "--full" in text
    assert text.index("sweep plan:") < text.index("PSNR")
    data = json.loads((run / "sweep" / "sweep.json").read_text())
    assert data["protocol"]["reference"]["atol"] == 1e-3
    assert [(r["solver"], r["steps"]) for r in data["rows"]] == [
        (s, n) for s in ("euler", "midpoint") for n in (1, 2, 4, 8)
    ]


def test_the_reference_solve_shows_progress_and_its_measured_cost(run, monkeypatch):
    """dopri5 decides its model calls as it runs: the bar advances on each of its calls, its total follows the
    pace measured so far (not a fixed guess), the plan is completed after its first solve, and the bar ends at
    exactly the fields the model evaluated."""
    monkeypatch.setenv("SSMSEG_PROGRESS_EVERY", "0")  # a plain line on every model call
    monkeypatch.setattr(sweep_grid, "DOPRI5_NFE_GUESS", 3)  # far below what dopri5 takes: the total must grow
    result = invoke(
        "sweep-steps",
        run,
        "--samples",
        "2",
        "--set",
        "sweep.baselines=[mean]",
        "--set",
        "sweep.max_fields=4",
        "--set",
        "sweep.steps=[1]",
        "--set",
        "sweep.solvers=[euler]",
        "--set",
        "sweep.reference_atol=1e-5",
        "--set",
        "sweep.reference_rtol=1e-5",
    )
    assert result.exit_code == 0, result.output
    data = json.loads((run / "sweep" / "sweep.json").read_text())
    nfe, fields = data["protocol"]["reference"]["nfe"], data["timing"]["model_fields"]
    assert nfe > 12  # dopri5: at least two steps of six calls
    lines = [ln for ln in result.output.splitlines() if ln.startswith("sweep (field evaluations): ")]
    totals = [int(ln.split("/")[1].split(" ")[0]) for ln in lines]
    assert len(lines) == data["timing"]["model_calls"]  # a line per model call: no silent stretch in dopri5
    assert totals[0] < totals[-1] == fields and lines[-1].startswith(
        f"sweep (field evaluations): {fields}/{fields} (100%)"
    )
    plan = next(ln for ln in result.output.splitlines() if ln.startswith("sweep plan:"))
    assert "4 fields x K = 2: 2 model calls" in plan and "measured on its first solve" in plan
    first = next(ln for ln in result.output.splitlines() if ln.startswith("dopri5 reference:"))
    calls = int(first.split("reference: ")[1].split(" ")[0])
    assert abs(calls - nfe) <= 12  # the first of the two solves (the two noises differ a little)
    assert f"about {2 * calls + 2:,} model calls ({2 * calls:,} of them dopri5)" in first
    done = [int(ln.split(": ")[1].split("/")[0]) for ln in lines]
    guessed = 1 * 4 * 2 + 3 * 4 * 2  # euler 1 step and the 3-call guess, 4 fields x 2 samples
    assert any(t > guessed for d, t in zip(done, totals, strict=True) if d < calls * 4)  # corrected mid-solve


# ---------------------------------------------------------------------------------------------- end to end


def sets(items):
    return [x for item in items for x in ("--set", item)]


def test_tiny_train_then_sweep(tmp_path):
    """ssmseg train (reconstruction, tiny field model, 1 epoch on tiny sinusoids), then sweep-steps on its run."""
    quick = ["--set", "runtime.threads=1", "--set", "runtime.scan_backend=torch"]
    settings = [
        "task.name=reconstruction",
        "model.name=field_unet",
        "model.width=8",
        "model.depth=2",
        "model.d_state=4",
        "train.epochs=1",
        "prep.fields.count=40",
        "prep.fields.size=16",
        "data.batch_size=8",
        "reconstruction.val_steps=2",
        "runtime.name=tiny",
    ]
    trained = invoke("train", "--out", tmp_path / "runs", "--device", "cpu", *quick, *sets(settings))
    assert trained.exit_code == 0, trained.output
    run = tmp_path / "runs" / "tiny"
    settings = [
        "sweep.solvers=[euler,heun]",
        "sweep.steps=[1,2]",
        "sweep.max_fields=4",
        "sweep.baselines=[mean,linear]",
    ]
    result = invoke("sweep-steps", run, "--samples", "2", *quick, *sets(settings))
    assert result.exit_code == 0, result.output
    data = json.loads((run / "sweep" / "sweep.json").read_text())
    assert [(r["solver"], r["steps"], r["nfe"]) for r in data["rows"]] == [
        ("euler", 1, 1),
        ("euler", 2, 2),
        ("heun", 1, 2),
        ("heun", 2, 4),
    ]
    assert data["protocol"]["fields"] == 4 and data["protocol"]["samples"] == 2 and data["protocol"]["own_dataset"]
    best = json.loads((run / "history.json").read_text())["best"]["epoch"]
    assert data["protocol"]["epoch"] == best == 1  # the epoch of the checkpoint swept, numbered as history.json
    assert all(math.isfinite(r["psnr_sample"]) and 0 <= r["coverage90"] <= 1 for r in data["rows"])
    assert {"examples.png", "psnr_vs_nfe.png", "sweep.csv"} <= {p.name for p in (run / "sweep").iterdir()}


def test_fields_in_other_units_are_refused_unless_the_model_works_in_per_field_units(run, tmp_path):
    """A cube in raw units normalised with the model's statistics gave "model -8.4 dB" with exit 0 once."""
    raw = tmp_path / "raw.npy"
    np.save(raw, (np.load(write_fields(tmp_path / "g.npy", 30)) * 1000.0 + 300.0).astype(np.float32))
    other = prepare_fields(
        build_config(explicit={"task": {"name": "reconstruction"}, "prep": {"images": [str(raw)]}}), tmp_path / "raw"
    ).out
    cfg = sweep_config(solvers=["euler"], steps=[1], samples=1, baselines=["mean"], max_fields=2)
    with pytest.raises(UsageError, match="not in the model's units"):
        sw.sweep_steps(cfg, run, other)
    assert "not in the model's units" in invoke("sweep-steps", run, "--fields", other).output
    state = ckpt.load(run / "checkpoints" / "best.pt")
    stats = FieldStats.from_dict(state["stats"])
    fields = load_fields(cfg, state, other, stats, invariant=True)  # a per-field model takes them
    assert fields.data_range == pytest.approx(float(np.ptp(np.load(raw)[:24])), rel=0.5)  # their own range
    assert fields.data_range > 1000 * stats.data_range / 2


def test_a_dataset_of_the_wrong_kind_says_which_kind_and_how_to_make_one(run, dataset, tmp_path):
    from ssmseg.data.prepare import prepare
    from tests.data.helpers import prep_config, scene

    scene(tmp_path / "src", size=48)
    segmentation = prepare(prep_config(tmp_path / "src"), tmp_path / "seg").out
    swept = invoke("sweep-steps", run, "--fields", segmentation, "--set", "sweep.steps=[1]")
    based = invoke("baseline", dataset, "--out", tmp_path / "b")
    for result, needs, makes in (
        (swept, "field (reconstruction) dataset", "--synthetic sinusoids"),
        (based, "segmentation dataset", "ssmseg prep --config"),
    ):
        assert result.exit_code != 0 and "Traceback" not in result.output, result.output
        text = result.output.replace("\n", " ")
        assert needs in text and makes in text and "set task.name:" not in text, text
    assert not (run / "sweep").exists() and not (tmp_path / "b").exists()
