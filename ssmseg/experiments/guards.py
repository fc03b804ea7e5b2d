"""What train, cv and eval check before any work, and what they tell the user when a run stops.

- Training data that cannot give a meaningful result (no labelled pixel in the training or validation part,
  a monitor that is never recorded, a run name that is a path) is an error before anything is written.
- ``config.yaml`` records what actually ran: a prepared dataset fixes the crop size and the prep settings.
- ``--resume`` starts from the run's own config; options on top are the change; extending ``train.epochs``
  is not a change that needs ``--force``; a finished run is left alone.
- Run, cv and eval folders are created exclusively, through ``ssmseg.outputs``.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ssmseg.config import Config, dump_config
from ssmseg.config.loading import validate_layers
from ssmseg.data import manifest as mf
from ssmseg.data.io import sha256_file
from ssmseg.engine.task import check_monitor
from ssmseg.errors import ConfigError, InputError, Interrupted
from ssmseg.outputs import RUN_FILES, OutputError, claim, create_folder, describe, pick_name, remove_own
from ssmseg.progress import info, warn
from ssmseg.tasks import task_class


class RunFinished(InputError):
    """``--resume`` of a run that has nothing left to do; the CLI reports it and exits 0."""


# --- before training -----------------------------------------------------------------------------------------


def check_config(cfg: Config) -> None:
    """Settings that cannot run, found before any folder is created."""
    name = cfg.runtime.name
    if name is not None and (not name.strip() or name in (".", "..") or "/" in name or os.sep in name):
        raise ConfigError(f"runtime.name '{name}' must be a plain folder name (no '/'); runtime.out_dir sets where "
                          "run folders go")  # fmt: skip
    if cfg.finetune.init is not None:  # a wrong --init is named before any data is prepared
        from ssmseg.engine.checkpoint import resolve

        resolve(cfg.finetune.init)
    cls = task_class(cfg.task.name)
    if cfg.train.monitor is not None and cls is not None:
        check_monitor(cfg.train.monitor, cls)


def _parts(dataset: Path, manifest: dict[str, Any], fold: int | None, heldout: bool = False) -> dict[str, list[int]]:
    """Labelled pixels per class of the part trained on, the part that selects the checkpoint, and (cv scoring)
    the held-out fold."""
    counts = manifest["class_counts"]
    if fold is None:
        return {"training": counts["train"], "validation": counts["val"]}
    from ssmseg.data.datasets import PatchDataset

    parts = {"training": "train", "validation": "val", **({"held-out": "heldout"} if heldout else {})}
    return {name: PatchDataset(dataset, part, fold).class_counts() for name, part in parts.items()}


def check_training_data(dataset: Path, manifest: dict[str, Any], fold: int | None, heldout: bool = False) -> None:
    from ssmseg.data.datasets import describe_part

    names = {"training": "train", "validation": "val", "held-out": "heldout"}
    for part, counts in _parts(dataset, manifest, fold, heldout).items():
        if not sum(counts):
            where = "" if fold is None else f" of cv fold {fold}"
            what = "" if fold is None else f"; they are: {describe_part(names[part], fold)}"
            raise InputError(
                f"'{dataset}': the {part} patches{where} hold no labelled pixel (every label is ignored or "
                f"nodata{what}), so nothing can be learned or measured; check prep.classes/class_map/ignore_values "
                "and the masks, or prepare the dataset again with a larger val share (prep.split.ratios), smaller "
                "prep.split.block_size or fewer folds"
            )


def cap_warmup(cfg: Config) -> Config:
    """A run shorter than its warmup (a preset shortened with --set train.epochs=2) warms up for all but its
    last epoch, with a warning; the returned config records the warmup that runs."""
    warmup, epochs = cfg.schedule.warmup_epochs, cfg.train.epochs
    if warmup < epochs:
        return cfg
    capped = epochs - 1
    warn(f"schedule.warmup_epochs {warmup} does not fit a {epochs}-epoch run: warming up for {capped} epoch"
         f"{'' if capped == 1 else 's'} instead (recorded in config.yaml)")  # fmt: skip
    return cfg.model_copy(update={"schedule": cfg.schedule.model_copy(update={"warmup_epochs": capped})})


def for_training(cfg: Config, dataset: Path, fold: int | None = None) -> Config:
    """Check what a run needs before any work; return the config that will actually run (a prepared dataset
    sets the crop size and the prep settings, which are recorded as they were; a warmup longer than the run
    is capped)."""
    check_config(cfg)
    cfg = cap_warmup(cfg)
    manifest = mf.load(dataset)
    if manifest.get("task", "segmentation") != cfg.task.name:
        kind = manifest.get("task", "segmentation")
        raise InputError(f"'{dataset}' is a {kind} dataset but task.name is {cfg.task.name}; give a {cfg.task.name} "
                         f"dataset or set task.name: {kind}")  # fmt: skip
    if cfg.task.name != "segmentation":  # fields carry their own size: record it as the size that ran
        side = min(manifest.get("size") or [cfg.data.crop_size])
        if side == cfg.data.crop_size or side < 8:
            return cfg
        return cfg.model_copy(update={"data": cfg.data.model_copy(update={"crop_size": side})})
    check_training_data(dataset, manifest, fold)
    if cfg.data.dataset is None:
        return cfg  # the built-in dataset is prepared from this very config: crop size and prep settings acted
    data = cfg.model_dump(mode="json")
    data["data"]["crop_size"] = manifest["crop_size"]
    if isinstance(manifest.get("prep"), dict):
        data["prep"] = manifest["prep"]
    try:
        return validate_layers([(f"config with the settings of dataset '{dataset}'", data)])
    except ConfigError:
        data["prep"] = cfg.prep.model_dump(mode="json")  # a manifest from another version: keep ours
        return validate_layers([(f"config with the crop size of dataset '{dataset}'", data)])


def create_run_folder(run_dir: Path, cfg: Config, exact: bool) -> tuple[Path, Config]:
    """Create the run folder exclusively (a new name when it exists, unless ``exact``: a cv fold); return it
    and the config with the name it really got."""
    created = create_folder(run_dir, "run", _config_key(cfg), unique=not exact, patterns=RUN_FILES,
                            about=f"ssmseg train, model {cfg.model.name}", option="--out")  # fmt: skip
    if created != Path(run_dir):
        info(f"'{run_dir}' already holds {describe(run_dir)}; this run is written to '{created}' "
             f"(to continue that run: ssmseg train --resume {run_dir})")  # fmt: skip
        cfg = cfg.model_copy(deep=True)
        cfg.runtime.name = created.name
    return created, cfg


def _config_key(cfg: Config, **extra: Any) -> dict[str, Any]:
    data = yaml.safe_load(dump_config(cfg))
    data.pop("runtime", None)
    return {**data, **extra}


# --- resume --------------------------------------------------------------------------------------------------


def run_config(run_dir: Path) -> dict[str, Any]:
    """The config a run folder was trained with; a wrong path is named as a run-folder problem."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise InputError(f"run folder '{run_dir}' does not exist; --resume takes a folder that ssmseg train wrote "
                         "(runs/<name>)")  # fmt: skip
    if not run_dir.is_dir():
        raise InputError(f"'{run_dir}' is a file; --resume takes the run folder that holds it (runs/<name>), "
                         "not a checkpoint")  # fmt: skip
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        runs = sorted(p.name for p in run_dir.iterdir() if (p / "config.yaml").is_file())
        hint = f"; it holds run folders ({', '.join(runs[:3])}): resume one of them" if runs else \
            "; give the folder that ssmseg train wrote (runs/<name>)"  # fmt: skip
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
    inert = ["runtime."] + (["prep."] if a.get("data.dataset") else [])
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
    if diffs and not force:
        raise ConfigError(
            f"resuming '{run_dir}' would change {', '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''} from what "
            "it was trained with; drop those options, or pass --force to continue with the new values"
        )
    return finished(run_dir, cfg, saved)


def _history(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(run_dir) / "history.json").read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and isinstance(data.get("epochs"), list) else None
    except (OSError, ValueError):
        return None


def finished(run_dir: Path, cfg: Config, saved: dict[str, Any] | None = None) -> str | None:
    """A line saying why resuming ``run_dir`` with ``cfg`` has nothing to do, or None."""
    history = _history(run_dir)
    if history is None:
        return None
    done, reason = len(history["epochs"]), str(history.get("stop_reason") or "")
    if reason == "completed" and done >= cfg.train.epochs:
        return (f"'{run_dir}' already finished all {done} epochs; nothing to do (to train longer: ssmseg train "
                f"--resume {run_dir} --set train.epochs={max(2 * done, done + 1)})")  # fmt: skip
    tr = (saved or {}).get("train", {})
    same_stop = tr.get("patience") == cfg.train.patience and tr.get("min_delta") == cfg.train.min_delta
    if reason.startswith("early stop") and same_stop:
        return (f"'{run_dir}' already stopped early after epoch {done} ({reason}); nothing to do (to go on anyway: "
                "--set train.patience=N --force)")  # fmt: skip
    return None


def stopped(run_dir: Path, remove: bool) -> Interrupted:
    """The Ctrl-C line: where the run stopped and the exact command that resumes it. A fresh run folder that
    holds no finished epoch is removed (``remove``), so nothing half-made is left."""
    run_dir = Path(run_dir)
    history = _history(run_dir) or {"epochs": []}
    done = len(history["epochs"])
    if not (run_dir / "checkpoints" / "latest.pt").is_file() or done == 0:
        if remove and run_dir.is_dir():
            try:
                remove_own(run_dir, "run")
                return Interrupted(f"run stopped before its first epoch finished; nothing was kept ('{run_dir}' "
                                   "removed); start it again")  # fmt: skip
            except OutputError:
                pass
        return Interrupted(f"run '{run_dir}' stopped before an epoch finished; nothing to resume; start it again")
    total = (run_config(run_dir).get("train") or {}).get("epochs", "?") if (run_dir / "config.yaml").is_file() else "?"
    return Interrupted(f"run '{run_dir}' stopped after epoch {done} of {total}; resume it exactly with: "
                       f"ssmseg train --resume {run_dir}")  # fmt: skip


def drop_unresumable(run_dir: Path, fresh: bool) -> None:
    """After a failure: a run folder created by this command that holds no checkpoint to resume from is removed
    (only when it holds nothing but what train wrote)."""
    if fresh and not (Path(run_dir) / "checkpoints" / "latest.pt").is_file():
        with contextlib.suppress(OutputError):
            remove_own(run_dir, "run")


# --- cross-validation ----------------------------------------------------------------------------------------


def check_folds(dataset: Path, k: int) -> None:
    """Every fold can be trained, validated (on the val split outside it) and scored (on its own patches):
    checked for all folds before the first one trains."""
    manifest = mf.load(dataset)
    if manifest.get("task", "segmentation") != "segmentation":
        from ssmseg.data.field_dataset import FieldDataset

        for fold in range(k):
            for part in ("train", "val", "heldout"):
                FieldDataset(dataset, part, fold)  # a part without fields is a one-line error naming it
        return
    for fold in range(k):
        check_training_data(dataset, manifest, fold, heldout=True)


# What a cv folder may hold and still be continued: its folds (and evaluations of them) and the summary.
CV_FILES = ("cv_summary.json", "cv_summary.csv", "fold_*/.ssmseg.json", "fold_*/eval/*",
            *(f"fold_*/{p}" for p in RUN_FILES))  # fmt: skip


def cv_folder(root: Path, cfg: Config, k: int) -> Path:
    """The cv folder: ``root`` when it is new, or our own cv folder of this same config and fold count (its
    completed folds are kept); otherwise a new name beside it."""
    check_config(cfg)
    key = _config_key(cfg, folds=k)
    try:
        if claim(root, "cv", key, option="runtime.name") == "same":
            return root
    except OutputError:
        pass
    created = create_folder(root, "cv", key, patterns=CV_FILES, about=f"ssmseg cv, {k} folds", option="--out")
    if created != Path(root):
        info(f"'{root}' already holds {describe(root)}; this cross-validation is written to '{created}'")
    return created


def cv_stopped(root: Path, fold: int, k: int) -> Interrupted:
    return Interrupted(f"cross-validation '{root}' stopped in fold {fold} of {k} (folds before it are kept); "
                       f"continue with the same command and --set runtime.name={root.name}")  # fmt: skip


# --- eval ----------------------------------------------------------------------------------------------------


def eval_key(checkpoint: Path, state: dict[str, Any], inputs: list[Path], masks: list[Path], dataset: Path | None,
             cfg: Config) -> dict[str, Any]:  # fmt: skip
    """Everything that determines an evaluation's outputs (the marker's inputs)."""
    from ssmseg.engine.checkpoint import resolve

    return {"checkpoint": str(resolve(checkpoint).resolve()), "epoch": state.get("epoch"),
            "inputs": [str(Path(p).resolve()) for p in inputs], "masks": [str(Path(p).resolve()) for p in masks],
            "dataset": None if inputs else str(dataset or state.get("dataset")),
            "eval": cfg.eval.model_dump(mode="json")}  # fmt: skip


def check_test_data(folder: Path, manifest: dict[str, Any], state: dict[str, Any]) -> None:
    """The test split can measure this model: the same classes, and labelled pixels to count."""
    if list(manifest["classes"]) != list(state["classes"]):
        raise InputError(f"'{folder}' has classes {manifest['classes']} but the model was trained on "
                         f"{state['classes']}; evaluate on a dataset with the model's classes")  # fmt: skip
    if not sum(manifest["class_counts"].get("test", [])):
        raise InputError(f"the test patches of '{folder}' hold no labelled pixel, so metrics would be empty; "
                         "prepare it with a test share (prep.split.ratios) that gets labelled pixels")  # fmt: skip


def run_folder_of(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def eval_folder(
    checkpoint: Path, out: Path | None, key: dict[str, Any], inputs: list[Path], dataset: Path | None = None
) -> Path:
    """Where an evaluation goes: ``--out`` when it is new, empty, or this same evaluation; by default a new
    subfolder of the run's ``eval/`` per evaluation (``test``, ``<scene>``, then ``-2``, ``-3``, ...)."""
    if out is not None:
        claim(out, "eval", key, mismatch=f"'{out}' holds outputs of another evaluation; choose another --out "
              "(or leave --out out: each evaluation gets its own folder under the run's eval/)")  # fmt: skip
        return Path(out)
    if inputs:
        name = Path(inputs[0]).stem + (f"-and-{len(inputs) - 1}-more" if len(inputs) > 1 else "")
    else:
        name = "test" if dataset is None else f"test-{Path(dataset).name}"
    return pick_name(run_folder_of(checkpoint) / "eval", name, "eval", key)


def evaluated(checkpoint: Path, state: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation evaluated: the run, the checkpoint file and epoch, and the model."""
    from ssmseg.engine.checkpoint import resolve

    run = run_folder_of(checkpoint)
    return {"run": str(run) if (run / "config.yaml").is_file() else None, "checkpoint": str(resolve(checkpoint)),
            "epoch": None if state.get("epoch") is None else int(state["epoch"]) + 1,
            "model": state.get("model_name") or state.get("config", {}).get("model", {}).get("name"),
            "model_config": state.get("config", {}).get("model"), "dataset": state.get("dataset"),
            "fold": state.get("fold"), "best": state.get("best")}  # fmt: skip


def record_evaluated(folder: Path, metrics: dict[str, Any] | None, source: dict[str, Any]) -> None:
    """Add ``evaluated`` to metrics.json (and to the returned metrics)."""
    path = Path(folder) / "metrics.json"
    if metrics is None or not path.is_file():
        return
    metrics["evaluated"] = source
    data = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({"evaluated": source, **data}, indent=1), encoding="utf-8")


def trained_on(state: dict[str, Any], inputs: list[Path]) -> list[str]:
    """Warnings for scenes that the run's dataset was prepared from: their metrics include training pixels."""
    try:
        sources = mf.load(Path(state["dataset"]))["sources"]
    except (InputError, KeyError, TypeError, OSError):
        return []
    notes = []
    for path in inputs:
        digest = None
        for src in sources:
            image = src.get("image", {})
            same = Path(image.get("path", "")).is_file() and os.path.samefile(image["path"], path)
            if not same and image.get("sha256"):
                digest = digest or sha256_file(path)
                same = digest == image["sha256"]
            if same:
                notes.append(f"'{path}' is a scene this run was trained on (a source of '{state['dataset']}'): its "
                             "prediction and metrics include training pixels and overstate accuracy; evaluate the "
                             "test split (ssmseg eval RUN) or another scene")  # fmt: skip
                break
    return notes
