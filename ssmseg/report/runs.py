"""Read run, cv, eval and sweep folders into plain data: files only (no torch, no engine, no tasks).

Tolerant by design: unknown keys are ignored, missing keys and files are listed in ``missing`` (the
report prints them), and only a file that cannot be read or parsed at all raises a one-line ``InputError``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssmseg.errors import InputError

# Per-epoch keys history.json format 2 writes besides the metrics; a v1 file lacks the last five.
EPOCH_KEYS = (
    "lr",
    "train/loss",
    "val/loss",
    "seconds",
    "val_seconds",
    "samples_per_s",
    "grad_norm_mean",
    "grad_norm_max",
    "peak_memory_mb",
)
V2_KEYS = ("format_version", "task", "mode", "metric_names", "run")
# What an eval's metrics.json holds, read from its keys: metrics per observed fraction, or per class; each with
# the keys such a file should have and the task that wrote it when the file records none (older files).
EVAL_LAYOUTS = {
    "per_fraction": (("per_fraction", "protocol"), "reconstruction"),
    "per_class": (("miou", "per_class", "chance", "protocol"), "segmentation"),
}
RUN_MARKERS = ("history.json", "config.yaml", "checkpoints", "result.json")


@dataclass
class Eval:
    """One evaluation: a folder holding ``metrics.json``."""

    path: Path
    name: str
    task: str  # what metrics.json records (older files record none: named from what they hold)
    metrics: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    layout: str = "per_class"  # a key of EVAL_LAYOUTS: what metrics.json holds


@dataclass
class Sweep:
    """A solver x steps sweep: a folder holding ``sweep.json``."""

    path: Path
    name: str
    protocol: dict[str, Any]
    rows: list[dict[str, Any]]
    baselines: list[dict[str, Any]]
    conclusions: list[Any]  # sentences (or objects with rule, message, evidence) written by sweep-steps
    missing: list[str] = field(default_factory=list)


@dataclass
class Run:
    """A run folder: its resolved config, its history and whatever eval or sweep outputs lie inside it."""

    path: Path
    name: str
    config: dict[str, Any] | None
    records: list[dict[str, Any]]  # one per epoch, sorted by epoch
    format_version: int | None
    task: str | None
    monitor: str | None
    mode: str | None
    metric_names: list[str]
    best: dict[str, Any]
    stop_reason: str | None
    info: dict[str, Any]  # history.json's "run" block (empty for format 1)
    missing: list[str] = field(default_factory=list)
    evals: list[Eval] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    schedule_changes: list[dict[str, Any]] = field(default_factory=list)  # LR schedule records (on extension)
    # train.select: "last" when best.pt (and ``best``) is the last epoch, not the monitored best
    select: str = "best"

    def planned_epochs(self) -> int | None:
        return _int(self.info.get("epochs_planned")) or _int(cfg_get(self.config, "train.epochs"))

    def warmup_epochs(self) -> int | None:
        value = self.info.get("warmup_epochs", cfg_get(self.config, "schedule.warmup_epochs"))
        return _int(value)


@dataclass
class CV:
    """A cross-validation folder: ``cv_summary.json`` and its ``fold_<k>/`` run folders."""

    path: Path
    name: str
    folds: list[dict[str, Any]]
    monitor: str | None
    mean: dict[str, float]
    std: dict[str, float]
    selected_on: str | None
    fold_runs: list[Run]
    missing: list[str] = field(default_factory=list)
    headline: str | None = None  # the metric that scores the folds (heldout/miou), when the summary names one
    note: str | None = None  # cv_summary.json's own words on what was selected and scored
    scored_on: str | None = None
    select: str = "best"  # train.select of the folds: "last" when each fold's best.pt is its last epoch

    @property
    def config(self) -> dict[str, Any] | None:
        """The folds' resolved config (fold 0's; the folds differ only in the fold they hold out)."""
        return next((r.config for r in self.fold_runs if r.config is not None), None)


Source = Run | CV | Eval | Sweep


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (NaN and Infinity allowed), or a one-line InputError naming the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read '{path}': {exc.strerror or exc}; check that it exists and is readable") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"'{path}' is not UTF-8 text; it is not an ssmseg output (move it away)") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"'{path}' is not valid JSON ({exc.msg} at line {exc.lineno}); it was cut short or "
            "edited: rerun the command that writes it, or move it away"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"'{path}' holds a JSON {type(data).__name__}, not an object; it is not an ssmseg output")
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read '{path}': {exc.strerror or exc}; check that it is readable") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(
            f"'{path}' is not valid YAML{line}; restore the run's resolved config or move it away"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"'{path}' is not a YAML mapping; restore the run's resolved config or move it away")
    return data


def cfg_get(config: dict[str, Any] | None, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def number(value: Any) -> float:
    """A float, NaN for anything that is not a number (None, strings, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _int(value: Any) -> int | None:
    return (
        int(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None
    )


def _list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InputError(f"'{path}': '{key}' is a {type(value).__name__}, not a list; rerun the command that wrote it")
    return value


def _dicts(items: list[Any], what: str, missing: list[str]) -> list[dict[str, Any]]:
    kept = [x for x in items if isinstance(x, dict)]
    if len(kept) < len(items):
        missing.append(f"{len(items) - len(kept)} {what} that are not JSON objects were skipped")
    return kept


# ---------------------------------------------------------------------------------------------- readers


def read_run(path: Path) -> Run:
    missing: list[str] = []
    config = read_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else None
    if config is None:
        missing.append("no config.yaml: the schedule, planned epochs and config differences are unknown")
    hist_path = path / "history.json"
    history = read_json(hist_path) if hist_path.is_file() else None
    if history is None:
        missing.append(
            "no history.json: the run has not finished an epoch (or the file was removed); "
            "the summary, curves, stages and findings need it"
        )
    if history is not None and "epochs" not in history:
        raise InputError(
            f"'{hist_path}' has no 'epochs' list ({_holds(history)}): it is not an ssmseg history.json or it was "
            "emptied; give the run folder that training wrote, or move the file away"
        )
    if history is None:
        history = {}
    records = _dicts(_list(history, "epochs", hist_path), "epoch records", missing)
    records = _by_epoch(records, missing)
    version = _int(history.get("format_version"))
    if history and version is None:
        absent = [k for k in V2_KEYS if k not in history]
        missing.append(
            f"history.json is format 1 (no {', '.join(absent)}): values are taken from config.yaml "
            "or the records where possible"
        )
    present = {k for r in records for k in r}
    absent_cols = [k for k in EPOCH_KEYS if k not in present]
    if records and absent_cols:
        missing.append(f"no per-epoch {', '.join(absent_cols)} in history.json: what needs them is skipped")
    names = history.get("metric_names") if isinstance(history.get("metric_names"), list) else []
    metric_names = [m for m in names if isinstance(m, str)] or sorted(
        {k[4:] for k in present if k.startswith("val/") and k != "val/loss"}
    )
    monitor = history.get("monitor") if isinstance(history.get("monitor"), str) else None
    if monitor is None and cfg_get(config, "train.monitor"):
        monitor = str(cfg_get(config, "train.monitor"))
        if history:
            missing.append(f"history.json names no monitor: '{monitor}' taken from config.yaml")
    mode = history.get("mode") if history.get("mode") in ("max", "min") else None
    if mode is None:
        mode = cfg_get(config, "train.mode") if cfg_get(config, "train.mode") in ("max", "min") else None
        if mode is None and monitor:
            mode = "min" if any(w in monitor for w in ("loss", "rmse", "mae", "error")) else "max"
            missing.append(f"no mode in history.json or config.yaml: '{mode}' inferred from the name '{monitor}'")
    task = history.get("task") if isinstance(history.get("task"), str) else None
    task = task or cfg_get(config, "task.name") or _task_from_metrics(metric_names)
    best = history.get("best") if isinstance(history.get("best"), dict) else {}
    best = {"value": number(best.get("value")), "epoch": _int(best.get("epoch"))}
    stop = history.get("stop_reason") if isinstance(history.get("stop_reason"), str) else None
    if history and stop is None:
        missing.append("history.json has no stop_reason: the run was still running, or it was killed")
    elif stop in ("running", "interrupted"):
        missing.append(f"stop_reason is '{stop}': the report covers the {len(records)} epochs written so far")
    info = history.get("run") if isinstance(history.get("run"), dict) else {}
    run = Run(path, path.name, config, records, version, task, monitor, mode, metric_names, best, stop, info, missing)
    run.select = "last" if history.get("select") == "last" else "best"
    run.evals, run.sweeps = _outputs_inside(path)
    run.schedule_changes = _schedule_changes(history, records)
    return run


SCHEDULE_KEYS = ("schedule_changes", "lr_schedule", "extensions")


def _schedule_changes(history: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """LR-schedule changes, each with the ``epoch`` (1-based) it takes effect: from history.json's ``schedule``
    record (a stage after the first: a run extended past its schedule's end; a change of the total while it ran,
    such as a schedule fitted to train.time_limit), from any of SCHEDULE_KEYS (a list of objects), or a
    per-epoch 'schedule_change' object. Older histories have none: then the list is empty."""
    out: list[dict[str, Any]] = []
    record = history.get("schedule") if isinstance(history.get("schedule"), dict) else {}
    stages = (
        [st for st in record.get("stages", []) if isinstance(st, dict)]
        if isinstance(record.get("stages"), list)
        else []
    )
    for st in stages[1:]:
        out.append(
            {
                "epoch": st.get("first_epoch"),
                "change": f"stage {st.get('stage')}: {st.get('kind')}",
                "epochs": f"{st.get('first_epoch')}–{st.get('last_epoch')}",
                "lr_first": st.get("lr_first"),
                "lr_last": st.get("lr_last"),
            }
        )
    changes = record.get("changes") if isinstance(record.get("changes"), list) else []
    for ch in (c for c in changes if isinstance(c, dict)):
        total = f"train.epochs {ch.get('epochs_from')} -> {ch.get('epochs_to')}"
        out.append({"epoch": ch.get("at_epoch"), "change": total, "why": ch.get("why")})
    for key in SCHEDULE_KEYS:
        value = history.get(key)
        items = value if isinstance(value, list) else [value] if isinstance(value, dict) else []
        out += [x for x in items if isinstance(x, dict)]
    for r in records:
        change = r.get("schedule_change")
        if isinstance(change, dict):
            out.append({"epoch": r["epoch"], **change})
    return out


def _holds(data: dict[str, Any]) -> str:
    return "an empty object" if not data else f"keys {', '.join(sorted(map(str, data))[:5])}"


def _by_epoch(records: list[dict[str, Any]], missing: list[str]) -> list[dict[str, Any]]:
    keyed: dict[int, dict[str, Any]] = {}
    for i, r in enumerate(records):
        epoch = _int(r.get("epoch"))
        keyed[epoch if epoch is not None else i + 1] = r  # a resumed run's rewritten epoch: the last one wins
    if len(keyed) < len(records):
        missing.append(f"{len(records) - len(keyed)} repeated epoch records in history.json: the last of each was kept")
    return [{**keyed[e], "epoch": e} for e in sorted(keyed)]


def _task_from_metrics(names: list[str]) -> str | None:
    if any(n in names for n in ("miou", "oa", "kappa")):
        return "segmentation"
    if any(n.startswith(("psnr", "ssim", "rmse")) for n in names):
        return "reconstruction"
    return None


def _outputs_inside(path: Path) -> tuple[list[Eval], list[Sweep]]:
    evals, sweeps = [], []
    eval_dir = path / "eval"
    if (eval_dir / "metrics.json").is_file():
        evals.append(read_eval(eval_dir, "eval"))
    if eval_dir.is_dir():
        for child in sorted(p for p in eval_dir.iterdir() if (p / "metrics.json").is_file()):
            evals.append(read_eval(child, f"eval/{child.name}"))
    for child in sorted(p for p in path.iterdir() if p.is_dir() and (p / "sweep.json").is_file()):
        sweeps.append(read_sweep(child, child.name))
    return evals, sweeps


def read_eval(path: Path, name: str | None = None) -> Eval:
    data = read_json(path / "metrics.json")
    if not any(k in data for k in ("per_fraction", "per_class", "miou", "oa", "confusion_matrix")):
        raise InputError(
            f"'{path / 'metrics.json'}' holds no metrics ({_holds(data)}): it is not an ssmseg eval output; "
            "rerun eval or move the file away"
        )
    missing: list[str] = []
    layout = "per_fraction" if "per_fraction" in data else "per_class"
    want, writer = EVAL_LAYOUTS[layout]
    absent = [k for k in want if k not in data]
    if absent:
        missing.append(f"metrics.json has no {', '.join(absent)}")
    task = data.get("task") if isinstance(data.get("task"), str) and data.get("task") else writer
    return Eval(path, name or path.name, task, data, missing, layout)


def read_sweep(path: Path, name: str | None = None) -> Sweep:
    file = path / "sweep.json"
    data = read_json(file)
    if "rows" not in data:
        raise InputError(
            f"'{file}' has no 'rows' ({_holds(data)}): it is not an ssmseg sweep output; rerun sweep-steps or move "
            "the file away"
        )
    missing: list[str] = []
    rows = _dicts(_list(data, "rows", file), "sweep rows", missing)
    baselines = _dicts(_list(data, "baselines", file), "baselines", missing)
    if not rows:
        missing.append("sweep.json has no rows")
    conclusions = list(_list(data, "conclusions", file))
    if rows and not conclusions:
        missing.append("sweep.json has no conclusions: rerun sweep-steps (the report shows what sweep-steps wrote)")
    protocol = data.get("protocol") if isinstance(data.get("protocol"), dict) else {}
    return Sweep(path, name or path.name, protocol, rows, baselines, conclusions, missing)


def _fold_dirs(path: Path) -> list[Path]:
    folds = [p for p in path.glob("fold_*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(folds, key=lambda p: int(p.name[5:]))


def read_cv(path: Path) -> CV:
    missing: list[str] = []
    fold_runs = [read_run(p) for p in _fold_dirs(path)]
    file = path / "cv_summary.json"
    data: dict[str, Any] = {}
    if file.is_file():
        data = read_json(file)
        if "folds" not in data:
            raise InputError(
                f"'{file}' has no 'folds' ({_holds(data)}): it is not an ssmseg cv summary; rerun cv or move it away"
            )
        folds = _dicts(_list(data, "folds", file), "fold rows", missing)
        mean = {k: number(v) for k, v in (data.get("mean") or {}).items()} if isinstance(data.get("mean"), dict) else {}
        std = {k: number(v) for k, v in (data.get("std") or {}).items()} if isinstance(data.get("std"), dict) else {}
        monitor = data.get("monitor") if isinstance(data.get("monitor"), str) else None
        selected = data.get("selected_on") if isinstance(data.get("selected_on"), str) else None
        if not mean:
            missing.append("cv_summary.json has no mean/std: computed here from its folds")
        if selected is None:
            missing.append("cv_summary.json does not say which split selected the best epoch (selected_on)")
    else:
        missing.append(
            "no cv_summary.json (cv still running or stopped): fold rows come from each fold's "
            "history.json at its best epoch"
        )
        folds, mean, std = [], {}, {}
        selected = next((r.info["selected_on"] for r in fold_runs if isinstance(r.info.get("selected_on"), str)), None)
        monitor = next((r.monitor for r in fold_runs if r.monitor), None)
        for k, run in enumerate(fold_runs):
            rec = next((r for r in run.records if r["epoch"] == run.best["epoch"]), None)
            if rec is not None:
                folds.append(
                    {
                        "fold": _int(run.path.name[5:]) if run.path.name[5:].isdigit() else k,
                        "best_epoch": rec["epoch"],
                        **{k2: v for k2, v in rec.items() if k2.startswith("val/")},
                    }
                )
            else:
                missing.append(f"{run.name} has no best epoch yet")
    listed = {_int(f.get("fold")) for f in folds}
    for run in fold_runs:
        k = int(run.name[5:])
        if k not in listed:
            missing.append(f"{run.name} has a folder but no row in the summary (not finished?)")
    text = {k: data.get(k) if isinstance(data.get(k), str) else None for k in ("headline", "note", "scored_on")}
    select = "last" if data.get("select") == "last" or any(r.select == "last" for r in fold_runs) else "best"
    return CV(path, path.name, folds, monitor, mean, std, selected, fold_runs, missing, **text, select=select)


# ---------------------------------------------------------------------------------------------- discovery


def _is_run(path: Path) -> bool:
    return any((path / m).exists() for m in RUN_MARKERS)


def discover(path: Path) -> list[Source]:
    """What ``path`` holds: a run, a cv folder, or eval/sweep outputs (directly or one level down)."""
    try:
        return _discover(Path(path))
    except OSError as exc:  # a folder that cannot be listed
        raise InputError(f"cannot read '{exc.filename or path}': {exc.strerror or exc}; check its permissions") from exc


def _discover(path: Path) -> list[Source]:
    if not path.exists():
        raise InputError(f"'{path}' does not exist; give a run, cv, eval or sweep folder")
    if path.is_file():
        if path.name in ("history.json", "metrics.json", "sweep.json", "cv_summary.json", "config.yaml"):
            path = path.parent
        else:
            raise InputError(
                f"'{path}' is a file; give the folder that holds history.json, cv_summary.json, "
                "metrics.json or sweep.json"
            )
    if (path / "cv_summary.json").is_file() or _fold_dirs(path):
        return [read_cv(path)]
    if _is_run(path):
        return [read_run(path)]
    found: list[Source] = []
    if (path / "metrics.json").is_file():
        found.append(read_eval(path))
    if (path / "sweep.json").is_file():
        found.append(read_sweep(path))
    if not found:
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            if (child / "metrics.json").is_file():
                found.append(read_eval(child, f"{path.name}/{child.name}"))
            if (child / "sweep.json").is_file():
                found.append(read_sweep(child, f"{path.name}/{child.name}"))
    if not found:
        raise InputError(
            f"'{path}' is not a run, cv, eval or sweep folder: a report needs history.json or "
            "config.yaml (run), cv_summary.json or fold_<k>/ (cv), metrics.json (eval) or sweep.json "
            "(sweep), in the folder or one level down"
        )
    return found
