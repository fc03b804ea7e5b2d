"""Bad inputs and faults, table-driven: every row is one command with the exit code, a fragment of the one
``error:`` line, and the check that nothing outside the intended output changed (nothing at all, since every
row fails or has nothing to do). Classes covered: missing/unreadable/truncated/wrong-type inputs, mismatched
pairs, label problems (unknown, lossy, none labelled), empty splits and folds, outputs that would overwrite
runs, datasets or user files, paths below a file, unwritable places (real: /sys refuses even root; simulated:
a read-only file system), bad cache folders, resume mistakes, and config errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.cli.conftest import TINY, assert_one_line_error, invoke, snapshot
from tests.data.helpers import scene, write_tif

PREP = ["prep", "--config", "{cfg}"]
TRAIN = ["train", *TINY, "--set", "data.dataset={ds}"]
CV = ["cv", *TINY, "--set", "data.dataset={ds}", "--folds", "2"]


def pair(case: str, image: str = "*.tif", mask: str = "*.tif") -> list[str]:
    """--set options that point prep at {bad}/<case>/img and {bad}/<case>/msk."""
    return ["--set", f"prep.images=[{{bad}}/{case}/img/{image}]", "--set", f"prep.masks=[{{bad}}/{case}/msk/{mask}]"]


# (id, command, exit code, fragment of the message[, env or a simulated fault])
ROWS = [
    # --- prep: sources
    ("prep-no-out", ["prep", "--config", "{cfg}"], 2, "--out DIR"),
    ("prep-synthetic-kind", ["prep", "--synthetic", "lidar"], 2, "hyperspectral, rgb or sinusoids"),
    ("prep-no-images", ["prep", "--out", "{new}"], 1, "no images given"),
    ("prep-no-match", [*PREP, "--set", "prep.images=[{bad}/none/*.tif]", "--out", "{new}"], 1, "matches no file"),
    (
        "prep-image-without-mask",
        [*PREP, "--set", "prep.masks=[{bad}/nomask/*.tif]", "--out", "{new}"],
        1,
        "has no mask",
    ),
    (
        "prep-mask-without-image",
        [*PREP, "--set", "prep.masks=[{src}/msk/*.tif,{bad}/extra/*.tif]", "--out", "{new}"],
        1,
        "has no image",
    ),
    ("prep-truncated-image", [*PREP, *pair("trunc"), "--out", "{new}"], 1, "truncated or damaged"),
    ("prep-truncated-mask", [*PREP, *pair("truncm"), "--out", "{new}"], 1, "truncated or damaged"),
    ("prep-text-as-tif", [*PREP, *pair("text"), "--out", "{new}"], 1, "cannot read raster"),
    ("prep-unsupported-type", [*PREP, *pair("txt", "a.txt", "a.txt"), "--out", "{new}"], 1, "unsupported file type"),
    (
        "prep-size-mismatch",
        [*PREP, "--set", "prep.masks=[{bad}/size/msk/*.tif]", "--out", "{new}"],
        1,
        "give the matching mask",
    ),
    (
        "prep-scene-smaller-than-crop",
        [*PREP, "--set", "data.crop_size=64", "--set", "prep.split.block_size=64", "--out", "{new}"],
        1,
        "smaller than data.crop_size",
    ),
    ("prep-npy-4d", [*PREP, *pair("npy", "*.npy", "*.npy"), "--out", "{new}"], 1, "4-D array"),
    # --- prep: labels and splits
    (
        "prep-unknown-values",
        [*PREP, "--set", "prep.classes=null", "--set", "prep.class_map={{0: 0, 1: 1}}", "--out", "{new}"],
        1,
        "cannot place: 2",
    ),
    (
        "prep-jpeg-mask",
        [
            *PREP,
            *pair("jpeg", "*.png", "*.jpg"),
            "--set",
            "prep.classes=null",
            "--set",
            "prep.palette={{'#FF0000': a, '#00FF00': b, '#0000FF': c}}",
            "--out",
            "{new}",
        ],
        1,
        "lossy (JPEG)",
    ),
    (
        "prep-classes-vs-class-map",
        [*PREP, "--set", "prep.class_map={{0: 0, 1: 1, 2: 1}}", "--out", "{new}"],
        1,
        "make them agree",
    ),
    (
        "prep-bad-palette-colour",
        [*PREP, "--set", "prep.classes=null", "--set", "prep.palette={{red: a}}", "--out", "{new}"],
        1,
        "is not a colour",
    ),
    (
        "prep-nothing-labelled",
        [
            *PREP,
            "--set",
            "prep.classes=null",
            "--set",
            "prep.class_map={{1: 0}}",
            "--set",
            "prep.ignore_values=[0, 2]",
            *pair("zeros"),
            "--out",
            "{new}",
        ],
        1,
        "no labelled pixel",
    ),
    ("prep-one-block", [*PREP, "--set", "prep.split.block_size=48", "--out", "{new}"], 1, "1 blocks cannot fill"),
    (
        "prep-val-nothing-labelled",
        [*PREP, "--set", "prep.split.buffer=64", "--out", "{new}"],
        1,
        "the val split holds no labelled pixel",
    ),
    ("prep-ratios-sum", [*PREP, "--set", "prep.split.ratios=[0.5, 0.2, 0.2]", "--out", "{new}"], 2, "sum to"),
    # --- prep: where it writes
    ("prep-out-user-folder", [*PREP, "--out", "{notes}"], 1, "did not write"),
    ("prep-out-user-folder-force", [*PREP, "--out", "{notes}", "--force"], 1, "did not write"),
    ("prep-out-other-dataset", [*PREP, "--set", "prep.split.seed=5", "--out", "{ds}"], 1, "pass --force"),
    ("prep-out-run-folder-force", [*PREP, "--out", "{run}", "--force"], 1, "a training run"),
    ("prep-out-is-file", [*PREP, "--out", "{afile}"], 1, "is a file"),
    ("prep-out-below-file", [*PREP, "--out", "{afile}/ds"], 1, "is a file, not a folder"),
    ("prep-out-not-permitted", [*PREP, "--out", "/sys/ssmseg-test-ds"], 1, "not permitted"),
    ("prep-out-read-only", [*PREP, "--out", "{ro}/ds"], 1, "read-only file system", {"fault": "erofs"}),
    (
        "prep-cache-is-file",
        ["prep", "--synthetic", "hyperspectral"],
        1,
        "SSMSEG_CACHE_DIR",
        {"SSMSEG_CACHE_DIR": "{afile}"},
    ),
    (
        "prep-cache-not-permitted",
        ["prep", "--synthetic", "rgb"],
        1,
        "SSMSEG_CACHE_DIR",
        {"SSMSEG_CACHE_DIR": "/sys/ssmseg-test-cache"},
    ),
    ("prep-check-missing-config", ["prep", "--check", "{bad}/absent.yaml"], 2, "does not exist"),
    ("prep-check-truncated-image", ["prep", "--check", "{cfg_trunc}"], 1, "truncated or damaged"),
    ("prep-check-damaged-dataset", ["prep", "--check", "{ds_trunc}"], 1, "problem"),
    ("prep-check-not-a-dataset", ["prep", "--check", "{notes}"], 1, "missing manifest.json"),
    # --- train
    ("train-unknown-model", [*TRAIN, "--set", "model.name=segnet", "--out", "{new}"], 2, "unknown model 'segnet'"),
    (
        "train-missing-dataset",
        ["train", *TINY, "--set", "data.dataset={bad}/absent", "--out", "{new}"],
        1,
        "does not exist",
    ),
    (
        "train-incomplete-dataset",
        ["train", *TINY, "--set", "data.dataset={ds_incomplete}", "--out", "{new}"],
        1,
        "is incomplete",
    ),
    (
        "train-truncated-patches",
        ["train", *TINY, "--set", "data.dataset={ds_trunc}", "--out", "{new}"],
        1,
        "labels.npy (truncated",
    ),
    (
        "train-nothing-labelled",
        ["train", *TINY, "--set", "data.dataset={ds_nolabel}", "--out", "{new}"],
        1,
        "training patches hold no labelled pixel",
    ),
    ("train-bad-monitor", [*TRAIN, "--set", "train.monitor=val/accuracy", "--out", "{new}"], 2, "not a segmentation"),
    ("train-name-is-path", [*TRAIN, "--set", "runtime.name=a/b", "--out", "{new}"], 2, "plain folder name"),
    (
        "train-prep-images-without-dataset",
        ["train", *TINY, "--set", "prep.images=[{src}/img/a.tif]", "--out", "{new}"],
        2,
        "data.dataset is empty",
    ),
    (
        "train-class-weights-length",
        [*TRAIN, "--set", "loss.class_weights=[1, 2]", "--out", "{new}"],
        2,
        "loss.class_weights has 2 values",
    ),
    ("train-out-below-file", [*TRAIN, "--out", "{afile}/runs"], 1, "is a file, not a folder"),
    ("train-out-not-permitted", [*TRAIN, "--out", "/sys/ssmseg-test-runs"], 1, "not permitted"),
    ("train-out-read-only", [*TRAIN, "--out", "{ro}/runs"], 1, "read-only file system", {"fault": "erofs"}),
    ("train-cuda-missing", [*TRAIN, "--device", "cuda", "--out", "{new}"], 1, "CUDA is not available"),
    (
        "train-max-val-patches-zero",
        [*TRAIN, "--set", "data.max_val_patches=0", "--out", "{new}"],
        2,
        "data.max_val_patches",
    ),
    ("train-bad-set", [*TRAIN, "--set", "optim.lr"], 2, "dotted.key=value"),
    ("train-bad-value", [*TRAIN, "--set", "data.batch_size=0", "--out", "{new}"], 2, "data.batch_size"),
    ("train-empty-config", ["train", "--config", "{empty_yaml}", "--out", "{new}"], 2, "holds no settings"),
    ("train-cache-is-file", ["train", *TINY, "--out", "{new}"], 1, "SSMSEG_CACHE_DIR", {"SSMSEG_CACHE_DIR": "{afile}"}),
    (
        "train-cache-read-only",
        ["train", *TINY, "--out", "{new}"],
        1,
        "SSMSEG_CACHE_DIR",
        {"SSMSEG_CACHE_DIR": "{ro}/cache", "fault": "erofs"},
    ),
    # --- train --resume
    ("resume-missing", ["train", "--resume", "{bad}/absent-run"], 1, "run folder"),
    ("resume-not-a-run", ["train", "--resume", "{notes}"], 1, "not a run folder (no config.yaml)"),
    ("resume-runs-parent", ["train", "--resume", "{runs}"], 1, "resume one of them"),
    ("resume-checkpoint-file", ["train", "--resume", "{run}/checkpoints/best.pt"], 1, "not a checkpoint"),
    ("resume-finished", ["train", "--resume", "{run}"], 0, "already finished all 1 epochs"),
    ("resume-changed-lr", ["train", "--resume", "{run}", "--set", "optim.lr=0.5"], 2, "would change optim.lr"),
    ("resume-no-latest", ["train", "--resume", "{run_nolatest}"], 1, "no checkpoints/latest.pt"),
    # --- cv
    ("cv-too-many-folds", [*CV, "--folds", "5", "--out", "{new}"], 2, "more than the 2 folds"),
    ("cv-one-fold", [*CV, "--folds", "1", "--out", "{new}"], 2, "--folds"),
    (
        "cv-empty-fold",
        [*CV, "--set", "data.dataset={ds_emptyfold}", "--out", "{new}"],
        1,
        "of cv fold 0 hold no labelled",
    ),
    ("cv-missing-dataset", ["cv", *TINY, "--set", "data.dataset={bad}/absent", "--out", "{new}"], 1, "does not exist"),
    ("cv-name-is-path", [*CV, "--set", "runtime.name=../x", "--out", "{new}"], 2, "plain folder name"),
    ("cv-bad-monitor", [*CV, "--set", "train.monitor=miou", "--out", "{new}"], 2, "is not a segmentation metric"),
    ("cv-unknown-model", [*CV, "--set", "model.name=segnet", "--out", "{new}"], 2, "unknown model"),
    ("cv-out-below-file", [*CV, "--out", "{afile}/cv"], 1, "is a file, not a folder"),
    # --- eval
    ("eval-missing-run", ["eval", "{bad}/absent-run"], 1, "does not exist"),
    ("eval-corrupt-checkpoint", ["eval", "{corrupt_pt}"], 1, "corrupt"),
    ("eval-run-without-checkpoint", ["eval", "{notes}"], 1, "no checkpoint in run folder"),
    ("eval-out-runs-parent", ["eval", "{run}", "--out", "{runs}"], 1, "run folders"),
    ("eval-out-the-run", ["eval", "{run}", "--out", "{run}"], 1, "a training run"),
    ("eval-out-user-folder", ["eval", "{run}", "--out", "{notes}"], 1, "did not write"),
    ("eval-out-dataset", ["eval", "{run}", "--out", "{ds}"], 1, "a prepared dataset"),
    ("eval-out-is-file", ["eval", "{run}", "--out", "{afile}"], 1, "is a file"),
    ("eval-out-below-file", ["eval", "{run}", "--out", "{afile}/ev"], 1, "is a file, not a folder"),
    ("eval-out-not-permitted", ["eval", "{run}", "--out", "/sys/ssmseg-test-eval"], 1, "not permitted"),
    ("eval-out-read-only", ["eval", "{run}", "--out", "{ro}/ev"], 1, "read-only file system", {"fault": "erofs"}),
    (
        "eval-truncated-scene",
        ["eval", "{run}", "--input", "{bad}/trunc/img/a.tif", "--out", "{new}"],
        1,
        "truncated or damaged",
    ),
    (
        "eval-text-scene",
        ["eval", "{run}", "--input", "{bad}/text/img/a.tif", "--out", "{new}"],
        1,
        "cannot read raster",
    ),
    ("eval-missing-scene", ["eval", "{run}", "--input", "{bad}/absent.tif", "--out", "{new}"], 1, "does not exist"),
    (
        "eval-band-count",
        ["eval", "{run}", "--input", "{bad}/bands4.tif", "--out", "{new}"],
        1,
        "has 4 bands but the model was trained on 3",
    ),
    (
        "eval-mask-count",
        ["eval", "{run}", "--input", "{image}", "--mask", "{mask}", "--mask", "{mask}", "--out", "{new}"],
        2,
        "one --mask per --input",
    ),
    (
        "eval-mask-size",
        ["eval", "{run}", "--input", "{image}", "--mask", "{bad}/size/msk/a.tif", "--out", "{new}"],
        1,
        "is not the size",
    ),
    (
        "eval-mask-nothing-labelled",
        ["eval", "{run}", "--input", "{image}", "--mask", "{bad}/sevens.tif", "--out", "{new}"],
        1,
        "hold no labelled pixel",
    ),
    (
        "eval-dataset-other-classes",
        ["eval", "{run}", "--dataset", "{ds_classes}", "--out", "{new}"],
        1,
        "evaluate on a dataset with the model's classes",
    ),
    ("eval-dataset-missing", ["eval", "{run}", "--dataset", "{bad}/absent", "--out", "{new}"], 1, "does not exist"),
    ("eval-dataset-truncated", ["eval", "{run}", "--dataset", "{ds_trunc}", "--out", "{new}"], 1, "truncated"),
    ("eval-bad-window", ["eval", "{run}", "--set", "eval.window=4", "--out", "{new}"], 2, "eval.window"),
    ("eval-cuda-missing", ["eval", "{run}", "--device", "cuda", "--out", "{new}"], 1, "CUDA is not available"),
    # --- config
    ("config-empty-file", ["config", "validate", "{empty_yaml}"], 2, "holds no settings"),
    ("config-folder", ["config", "validate", "{notes}"], 2, "is a folder"),
    ("config-unknown-key", ["config", "validate", "{typo_yaml}"], 2, "did you mean optim.lr"),
    ("config-syntax", ["config", "validate", "{syntax_yaml}"], 2, "YAML syntax error"),
    ("config-not-mapping", ["config", "validate", "{list_yaml}"], 2, "must be a mapping"),
    ("config-binary", ["config", "validate", "{binary_yaml}"], 2, "cannot read config file"),
    ("config-unknown-preset", ["config", "show", "--preset", "fsat"], 2, "did you mean 'fast'"),
    ("config-empty-key-part", ["config", "show", "--set", "a..b=1"], 2, "dotted.key=value"),
    # --- issue 19: cases that still failed, silent acceptance, wrong advice
    ("models-classes-negative", ["models", "--classes", "-1"], 2, "Invalid value for '--classes'"),
    ("models-bands-negative", ["models", "--bands", "-3"], 2, "Invalid value for '--bands'"),
    ("models-bands-zero", ["models", "--bands", "0"], 2, "Invalid value for '--bands'"),
    ("models-classes-zero", ["models", "--classes", "0"], 2, "Invalid value for '--classes'"),
    (
        "export-disk-full",
        ["export", "{run}", "--format", "torchscript", "--out", "{new}"],
        1,
        "out/new/model.torchscript.pt': no space is left on that device",
        {"fault": "enospc"},
    ),
    (
        "prep-disk-full",
        [*PREP, "--out", "{new}"],
        1,
        "cannot write '{new}': no space is left on that device",
        {"fault": "enospc-numpy"},
    ),
    (
        "prep-sources-one-file",
        [*PREP, "--set", "prep.split.mode=sources", "--out", "{new}"],
        1,
        "add image files (each whole file is one unit) or use prep.split.mode blocks",
    ),
    (
        "prep-check-missing-dir-preset",
        ["prep", "--preset", "isprs_vaihingen", "--check", "{bad}/absent-dir"],
        2,
        "--check '{bad}/absent-dir' does not exist",
    ),
    ("config-dev-null", ["config", "validate", "/dev/null"], 2, "holds no settings"),
    (
        "prep-overlap-not-a-fraction",
        [*PREP, "--set", "prep.overlap=1.5", "--out", "{new}"],
        2,
        "not a fraction of the crop in [0, 1)",
    ),
    ("prep-overlap-pixels-hint", [*PREP, "--set", "prep.overlap=4", "--out", "{new}"], 2, "prep.overlap_px: 4"),
    (
        "prep-ratios-empty-splits",
        [*PREP, "--set", "prep.split.ratios=[1, 0, 0]", "--out", "{new}"],
        2,
        "leaves the val and test splits empty",
    ),
    ("train-crop-size-vs-dataset", [*TRAIN, "--set", "data.crop_size=64", "--out", "{new}"], 2, "holds 16-px patches"),
    ("cv-crop-size-vs-dataset", [*CV, "--set", "data.crop_size=32", "--out", "{new}"], 2, "holds 16-px patches"),
    (
        "prep-set-unquoted-brackets",
        [*PREP, "--set", "prep.images=[{bad}/x/[ab].tif]", "--out", "{new}"],
        2,
        "quote items that hold brackets",
    ),
    (
        "prep-fields-all-nodata",
        ["prep", "--config", "{fields_nan_yaml}", "--out", "{new}"],
        1,
        "nan.tif': all 16 tiles of 8x8 touch nodata or NaN pixels",
    ),
    (
        "prep-fields-sources-one-file",
        ["prep", "--config", "{fields_one_yaml}", "--set", "prep.split.mode=sources", "--out", "{new}"],
        1,
        "add files (each whole file is one unit)",
    ),
    (
        "prep-fields-user-folder-force",
        ["prep", "--synthetic", "sinusoids", "--out", "{notes}", "--force"],
        1,
        "did not write",
    ),
    # --- issue 19, re-audited from the command line
    (
        "resume-finished-empty-latest",
        ["train", "--resume", "{run_emptylatest}"],
        1,
        "checkpoints/latest.pt (empty) cannot be loaded",
    ),
    (
        "resume-finished-truncated-best",
        ["train", "--resume", "{run_halfbest}"],
        1,
        "checkpoints/best.pt (truncated or corrupt) cannot be loaded",
    ),
    (
        "resume-checkpoint-of-another-model",
        ["train", "--resume", "{run_othermodel}", "--set", "train.epochs=2"],
        1,
        "holds a unet model, not the ssmu_net this run trains",
    ),
    (
        "eval-set-model-name",
        ["eval", "{run}", "--set", "model.name=nonsense", "--out", "{new}"],
        2,
        "eval runs the checkpoint's own model (unet) and cannot change it",
    ),
    (
        "sweep-steps-segmentation-fields",
        ["sweep-steps", "{rec_run}", "--fields", "{ds}"],
        1,
        "is a segmentation dataset; this needs a field (reconstruction) dataset",
    ),
    ("sweep-steps-segmentation-run", ["sweep-steps", "{run}"], 2, "sweep-steps needs a reconstruction run"),
    (
        "baseline-fields-dataset",
        ["baseline", "{fields}", "--out", "{new}"],
        1,
        "is a field (reconstruction) dataset; this needs a segmentation dataset",
    ),
    (
        "baseline-reconstruction-task",
        ["baseline", "{fields}", "--set", "task.name=reconstruction", "--out", "{new}"],
        2,
        "baselines (interpolants, GP) are scored by ssmseg sweep-steps",
    ),
    (
        "cv-baselines-reconstruction",
        [
            "cv",
            "--set",
            "task.name=reconstruction",
            "--set",
            "data.dataset={fields}",
            "--set",
            "model.name=field_unet",
            "--set",
            "cv.baselines=true",
            "--folds",
            "2",
            "--out",
            "{new}",
        ],
        2,
        "cv.baselines: the reconstruction task's classical",
    ),
    ("report-empty-history", ["report", "{bad}/emptyhist", "--out", "{new}"], 1, "has no 'epochs' list"),
    ("report-device", ["report", "/dev/null", "--out", "{new}"], 2, "is neither a folder nor a file"),
]


def _dataset_copy(world, root: Path, name: str, edit) -> Path:
    out = root / f"ds_{name}"
    shutil.copytree(world.dataset, out)
    manifest = json.loads((out / "manifest.json").read_text())
    edit(out, manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


@pytest.fixture(scope="module")
def places(world, tmp_path_factory) -> dict[str, str]:
    """Every bad input, made once; the rows name them by key."""
    bad = tmp_path_factory.mktemp("bad")
    for case, which in (("trunc", "img"), ("truncm", "msk")):
        shutil.copytree(world.src, bad / case)
        target = bad / case / which / "a.tif"
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    for name in ("text/img", "text/msk", "txt/img", "txt/msk", "nomask", "extra", "size/msk", "npy/img", "npy/msk"):
        (bad / name).mkdir(parents=True)
    (bad / "text" / "img" / "a.tif").write_text("not a raster")
    shutil.copy(world.mask, bad / "text" / "msk" / "a.tif")
    (bad / "txt" / "img" / "a.txt").write_text("1 2 3")
    (bad / "txt" / "msk" / "a.txt").write_text("1 2 3")
    write_tif(bad / "nomask" / "b.tif", np.zeros((48, 48), np.uint8))
    write_tif(bad / "extra" / "z.tif", np.zeros((48, 48), np.uint8))
    write_tif(bad / "size" / "msk" / "a.tif", np.zeros((40, 40), np.uint8))
    np.save(bad / "npy" / "img" / "a.npy", np.zeros((2, 3, 8, 8), np.float32))
    np.save(bad / "npy" / "msk" / "a.npy", np.zeros((8, 8), np.uint8))
    scene(bad / "zeros", size=48)
    write_tif(bad / "zeros" / "msk" / "a.tif", np.zeros((48, 48), np.uint8))
    _jpeg_mask_scene(bad / "jpeg")
    write_tif(bad / "bands4.tif", np.ones((4, 32, 32), np.uint16))
    write_tif(bad / "sevens.tif", np.full((48, 48), 7, np.uint8))
    notes = bad / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "todo.txt").write_text("mine")
    (notes / "sub" / "data.csv").write_text("1,2")
    (bad / "afile").write_text("a regular file")
    (bad / "corrupt.pt").write_bytes(b"\x00" * 64)
    (bad / "empty.yaml").write_text("# nothing but a comment\n")
    (bad / "typo.yaml").write_text("optim:\n  lrr: 0.1\n")
    (bad / "syntax.yaml").write_text("optim:\n  lr: [1, 2\n")
    (bad / "list.yaml").write_text("- a\n- b\n")
    (bad / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81")
    write_tif(bad / "nan.tif", np.full((1, 32, 32), np.nan, np.float32))
    np.save(bad / "stack.npy", np.random.default_rng(0).random((12, 8, 8)).astype(np.float32))
    (bad / "fields_one.yaml").write_text(f"task: {{name: reconstruction}}\nprep:\n  images: [{bad / 'stack.npy'}]\n")
    (bad / "fields_nan.yaml").write_text(
        f"task: {{name: reconstruction}}\nprep:\n  images: [{bad / 'nan.tif'}]\n  fields: {{size: 8}}\n"
    )
    cfg = world.prep_yaml(bad / "prep.yaml")
    cfg_trunc = world.prep_yaml(
        bad / "prep_trunc.yaml",
        images=[str(bad / "trunc" / "img" / "*.tif")],
        masks=[str(bad / "trunc" / "msk" / "*.tif")],
    )

    def truncate_labels(out, manifest):
        data = (out / "labels.npy").read_bytes()
        (out / "labels.npy").write_bytes(data[: len(data) // 2])

    def no_labels(out, manifest):
        manifest["class_counts"]["train"] = [0, 0, 0]

    def empty_fold(out, manifest):
        labels = np.load(out / "labels.npy", mmap_mode="r+")
        for i, patch in enumerate(manifest["patches"]):
            if patch["fold"] == 1:
                labels[i] = manifest["ignore_index"]
        labels.flush()
        del labels
        manifest["class_counts"]["fold_1"] = [0, 0, 0]

    def other_classes(out, manifest):
        manifest["classes"] = ["x", "y", "z"]

    datasets = {
        f"ds_{name}": str(_dataset_copy(world, bad, name, edit))
        for name, edit in (
            ("trunc", truncate_labels),
            ("nolabel", no_labels),
            ("emptyfold", empty_fold),
            ("classes", other_classes),
        )
    }
    (bad / "incomplete").mkdir()
    shutil.copy(world.dataset / "images.npy", bad / "incomplete")
    damaged = {}
    for name, damage in (("emptylatest", "latest"), ("halfbest", "best")):
        path = world.copy_run(bad / name) / "checkpoints" / f"{damage}.pt"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if damage == "best" else b"")
        damaged[f"run_{name}"] = str(bad / name)
    other = world.copy_run(bad / "othermodel")
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["model"] = {"name": "ssmu_net"}
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    (bad / "emptyhist").mkdir()
    (bad / "emptyhist" / "history.json").write_text("{}")
    fields = bad / "fields"
    assert (
        invoke(
            "prep",
            "--synthetic",
            "sinusoids",
            "--set",
            "prep.fields.count=30",
            "--set",
            "prep.fields.size=16",
            "--out",
            fields,
        ).exit_code
        == 0
    )
    rec = [
        "task.name=reconstruction",
        f"data.dataset={fields}",
        "model.name=field_unet",
        "model.width=4",
        "train.epochs=1",
        "reconstruction.val_steps=1",
        "runtime.name=rec",
    ]
    rec = invoke("train", *(x for kv in rec for x in ("--set", kv)), "--device", "cpu", "--out", bad / "runs")
    assert rec.exit_code == 0, rec.output
    nolatest = world.copy_run(bad / "nolatest")
    (nolatest / "checkpoints" / "latest.pt").unlink()
    history = json.loads((nolatest / "history.json").read_text())
    history["stop_reason"] = "interrupted"
    (nolatest / "history.json").write_text(json.dumps(history))
    return {
        "bad": str(bad),
        "src": str(world.src),
        "ds": str(world.dataset),
        "run": str(world.run),
        "runs": str(world.run.parent),
        "image": str(world.image),
        "mask": str(world.mask),
        "notes": str(notes),
        "afile": str(bad / "afile"),
        "corrupt_pt": str(bad / "corrupt.pt"),
        "cfg": str(cfg),
        "cfg_trunc": str(cfg_trunc),
        "ds_incomplete": str(bad / "incomplete"),
        "run_nolatest": str(nolatest),
        "ro": str(bad / "readonly"),
        **datasets,
        **damaged,
        "run_othermodel": str(other),
        "fields": str(fields),
        "rec_run": str(bad / "runs" / "rec"),
        **{
            f"{k}_yaml": str(bad / f"{k}.yaml")
            for k in ("empty", "typo", "syntax", "list", "binary", "fields_nan", "fields_one")
        },
    }


def _jpeg_mask_scene(folder: Path) -> None:
    from PIL import Image

    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    labels = (np.arange(48)[None, :] // 8 + np.arange(48)[:, None] // 8) % 3
    (folder / "img").mkdir(parents=True)
    (folder / "msk").mkdir()
    Image.fromarray(colours[labels]).save(folder / "img" / "a.png")
    Image.fromarray(colours[labels]).save(folder / "msk" / "a.jpg", quality=75)


def _read_only_below(monkeypatch, root: str) -> None:
    """Simulated: root may write anywhere here, so creating a folder below ``root`` fails as on a read-only
    mount (EROFS), and os.access reports it unwritable."""
    real_mkdir, real_access = os.mkdir, os.access

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(root):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    def access(path, mode, *args, **kwargs):
        if str(path).startswith(root) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "access", access)


def _disk_full_for_atomic_writes(monkeypatch) -> None:
    """Simulated: the disk fills half-way through a file written by ``outputs.write_bytes`` (export)."""
    from ssmseg import outputs

    def full(path, data):
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name

    monkeypatch.setattr(outputs, "_write_file", full)


def _disk_full_for_numpy(monkeypatch) -> None:
    """Simulated: the disk fills while prep writes its patch arrays (a plain write(): no file name)."""
    from ssmseg.data.npyfile import NpyWriter

    def full(self, patch):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(NpyWriter, "append", full)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(row, places, world, tmp_path, monkeypatch):
    _, command, code, fragment, *extra = row
    paths = {**places, "new": str(tmp_path / "out" / "new")}
    env = {k: v.format(**paths) for k, v in (extra[0] if extra else {}).items()}
    fault = env.pop("fault", None)
    if fault == "erofs":
        Path(paths["ro"]).mkdir(exist_ok=True)
        _read_only_below(monkeypatch, paths["ro"])
    elif fault == "enospc":
        _disk_full_for_atomic_writes(monkeypatch)
    elif fault == "enospc-numpy":
        _disk_full_for_numpy(monkeypatch)
    cwd = tmp_path / "cwd"  # commands that default to ./runs would write here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    watched = (world.root, Path(places["bad"]), Path(os.environ["SSMSEG_CACHE_DIR"]))
    before = snapshot(*watched)
    result = invoke(*[part.format(**paths) for part in command], env=env or None)
    if code == 0:
        assert result.exit_code == 0 and fragment in result.output, result.output
    else:
        assert_one_line_error(result, code, fragment.format(**paths))
    assert snapshot(*watched) == before, "a file outside the intended output changed"
    assert list(cwd.iterdir()) == [] and not (tmp_path / "out").exists(), list(tmp_path.rglob("*"))


def test_the_table_is_large_and_covers_every_command():
    commands = {row[1][0] for row in ROWS}
    every = {"prep", "train", "cv", "eval", "config", "models", "export", "sweep-steps", "baseline", "report"}
    assert len(ROWS) >= 60 and commands == every


def test_outputs_follow_the_umask(world, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "ds"
        assert (
            invoke(
                "prep",
                "--synthetic",
                "sinusoids",
                "--set",
                "prep.fields.count=12",
                "--set",
                "prep.fields.size=8",
                "--out",
                out,
            ).exit_code
            == 0
        )
        assert out.stat().st_mode & 0o777 == 0o755
        assert (out / "fields.npy").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_a_raster_without_crs_gives_our_one_line_not_rasterios(world, tmp_path):
    image, _ = scene(tmp_path / "nocrs", crs=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = invoke("eval", world.run, "--input", image, "--out", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    assert result.output.count("has no CRS") == 1
    assert not [w for w in caught if "geotransform" in str(w.message)]  # rasterio's two lines stay silent
