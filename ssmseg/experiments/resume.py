"""``--resume``: a run continues from its own config (options on top are the change); extending
``train.epochs`` is not a change that needs ``--force``; fewer epochs than already trained is; a finished run
is left alone (when its checkpoints are whole). Also what the user is told when a run stops (Ctrl-C, a
failure, divergence) and what is kept of it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import yaml

from ssmseg.config import Config, dump_config
from ssmseg.engine import checkpoint as ckpt
from ssmseg.errors import ConfigError, InputError, Interrupted
from ssmseg.outputs import OutputError, remove_own


class RunFinished(InputError):
    """``--resume`` of a run that has nothing left to do; the CLI reports it and exits 0."""


def run_config(run_dir: Path) -> dict[str, Any]:
    """The config a run folder was trained with; a wrong path is named as a run-folder problem."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError(
            f"run folder '{run_dir}' does not exist; --resume takes a folder that ssmseg train wrote (runs/<name>)"
        )
    if not run_dir.is_dir():
        raise InputError(
            f"'{run_dir}' is a file; --resume takes the run folder that holds it (runs/<name>), not a checkpoint"
        )
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        runs = sorted(p.name for p in run_dir.iterdir() if (p / "config.yaml").is_file())
        hint = (
            f"; it holds run folders ({', '.join(runs[:3])}): resume one of them"
            if runs
            else "; give the folder that ssmseg train wrote (runs/<name>)"
        )
        raise InputError(f"'{run_dir}' is not a run folder (no config.yaml){hint}")
    try:
        data = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"'{saved}' is unreadable ({type(exc).__name__}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise InputError(f"'{saved}' is not a config (empty or not a mapping); the run folder is damaged")
    return data


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def resume_differences(saved: dict[str, Any], cfg: Config) -> list[str]:
    """Keys whose change alters an exact resume: runtime settings never do; prep settings do not once the run
    reads a prepared dataset; a larger train.epochs extends the run."""
    a, b = _flatten(saved), _flatten(yaml.safe_load(dump_config(cfg)))
    defaults = _flatten(yaml.safe_load(dump_config(Config())))
    inert = ["runtime.", "train.time_limit", "train.fit_schedule", "train.extend_schedule"] + (
        ["prep."] if a.get("data.dataset") else []
    )
    # A key the run's config predates (a newer ssmseg's) changes nothing while it keeps its default.
    a = {**{k: v for k, v in defaults.items() if k not in a and k in b and b[k] == v}, **a}
    diffs = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and not k.startswith(tuple(inert)))
    if "train.epochs" in diffs and isinstance(a.get("train.epochs"), int) and b["train.epochs"] > a["train.epochs"]:
        diffs.remove("train.epochs")
    return diffs


def check_resume(run_dir: Path, cfg: Config, force: bool, saved: dict[str, Any] | None = None) -> str | None:
    """Raise ``ConfigError`` when ``cfg`` changes the run (unless ``force``); return a line when the run has
    nothing left to do (the caller then writes nothing), else None."""
    saved = run_config(run_dir) if saved is None else saved
    diffs = resume_differences(saved, cfg)
    if "train.select" in diffs:  # best.pt and history's best would mix two rules: --force cannot make that true
        before = (saved.get("train") or {}).get("select", "best")
        raise ConfigError(
            f"resuming '{run_dir}' cannot change train.select ({before} -> {cfg.train.select}): best.pt was kept by "
            f"'{before}' so far; resume with train.select: {before}, or train a new run"
        )
    if diffs and not force:
        raise ConfigError(
            f"resuming '{run_dir}' would change {', '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''} from what "
            "it was trained with; drop those options, or pass --force to continue with the new values"
        )
    return finished(run_dir, cfg, saved)


def history(run_dir: Path) -> dict[str, Any] | None:
    """A run folder's history.json, or None when it is missing or not a history."""
    try:
        data = json.loads((Path(run_dir) / "history.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and isinstance(data.get("epochs"), list) else None
    except (OSError, ValueError):
        return None


def damaged_checkpoints(run_dir: Path) -> list[str]:
    """'<file> (<why>)' for each checkpoint of a finished run that cannot be loaded (empty, truncated)."""
    bad = []
    for name in ("latest.pt", "best.pt"):
        path = Path(run_dir) / "checkpoints" / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
            continue
        try:
            ckpt.load(path)
        except InputError:
            bad.append(f"{name} ({'empty' if path.stat().st_size == 0 else 'truncated or corrupt'})")
    return bad


def finished(run_dir: Path, cfg: Config, saved: dict[str, Any] | None = None) -> str | None:
    """A line saying why resuming ``run_dir`` with ``cfg`` has nothing to do, or None. A finished run whose
    checkpoints are damaged is an error that says so (nothing to do would hide that its model is lost)."""
    record = history(run_dir)
    if record is None:
        return None
    done, reason = len(record["epochs"]), str(record.get("stop_reason") or "")
    line = None
    if reason == "completed" and done >= cfg.train.epochs:
        line = (
            f"'{run_dir}' already finished all {done} epochs; nothing to do (to train longer: ssmseg train "
            f"--resume {run_dir} --set train.epochs={max(2 * done, done + 1)})"
        )
    tr = (saved or {}).get("train", {})
    same_stop = tr.get("patience") == cfg.train.patience and tr.get("min_delta") == cfg.train.min_delta
    if reason.startswith("early stop") and same_stop:
        line = (
            f"'{run_dir}' already stopped early after epoch {done} ({reason}); nothing to do (to go on anyway: "
            "--set train.patience=N --force)"
        )
    bad = damaged_checkpoints(run_dir) if line else []
    if bad:
        raise InputError(
            f"'{run_dir}' finished its {done} epochs but checkpoints/{' and '.join(bad)} cannot be loaded, so its "
            "model is lost (history.json is intact); train it again into a new run folder"
        )
    return line


def resume_state(run_dir: Path, cfg: Config, force: bool) -> dict[str, Any]:
    """The latest.pt state a resume starts from (``RunFinished`` when there is nothing to do)."""
    done = check_resume(run_dir, cfg, force)  # the run's own config; only a real change needs --force
    if done:
        raise RunFinished(done)
    latest = Path(run_dir) / "checkpoints" / "latest.pt"
    if not latest.is_file():
        raise InputError(f"'{run_dir}' has no checkpoints/latest.pt to resume from; start a new run")
    state = ckpt.load(latest)
    model = (state.get("config") or {}).get("model", {}).get("name") or state.get("model_name")
    if model is not None and model != cfg.model.name:
        raise InputError(
            f"'{latest}' holds a {model} model, not the {cfg.model.name} this run trains (its config.yaml and "
            "checkpoint disagree); resume a run whose checkpoint matches its model, or start a new run"
        )
    return state


def stopped(run_dir: Path, remove: bool) -> Interrupted:
    """The Ctrl-C line: where the run stopped and the exact command that resumes it. A fresh run folder that
    holds no finished epoch is removed (``remove``), so nothing half-made is left."""
    run_dir = Path(run_dir)
    done = len((history(run_dir) or {"epochs": []})["epochs"])
    if not (run_dir / "checkpoints" / "latest.pt").is_file() or done == 0:
        if remove and run_dir.is_dir():
            try:
                remove_own(run_dir, "run")
                return Interrupted(
                    f"run stopped before its first epoch finished; nothing was kept ('{run_dir}' removed); start it "
                    "again"
                )
            except OutputError:
                pass
        return Interrupted(f"run '{run_dir}' stopped before an epoch finished; nothing to resume; start it again")
    total = (run_config(run_dir).get("train") or {}).get("epochs", "?") if (run_dir / "config.yaml").is_file() else "?"
    return Interrupted(
        f"run '{run_dir}' stopped after epoch {done} of {total}; resume it exactly with: ssmseg train --resume "
        f"{run_dir}"
    )


def drop_unresumable(run_dir: Path, fresh: bool) -> None:
    """After a failure: a run folder created by this command that holds no checkpoint to resume from is removed
    (only when it holds nothing but what train wrote)."""
    if fresh and not (Path(run_dir) / "checkpoints" / "latest.pt").is_file():
        with contextlib.suppress(OutputError):
            remove_own(run_dir, "run")


def diverged(message: str, run_dir: Path) -> str:
    """The divergence line with what is really kept: the run folder stays (its history shows the run up to the
    failure), with the checkpoint of the last finished epoch when there is one."""
    run_dir = Path(run_dir)
    head = message.split("; the last good checkpoint is kept")[0]
    done = len((history(run_dir) or {"epochs": []})["epochs"])
    latest = run_dir / "checkpoints" / "latest.pt"
    if latest.is_file() and done:
        kept = f"'{run_dir}' keeps its history and the checkpoints of epoch {done} and before"
    elif done:
        kept = f"'{run_dir}' keeps its history of {done} epoch{'s' if done > 1 else ''} (no checkpoint was saved)"
    else:
        kept = f"no epoch finished, so no checkpoint exists; '{run_dir}' keeps the config that ran"
    return f"{head}; {kept}; lower optim.lr or set optim.grad_clip"
