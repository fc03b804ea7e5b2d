"""ssmseg.outputs: markers, exclusive creation, replace-only-what-we-wrote, and I/O faults as one line."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from ssmseg import outputs
from ssmseg.outputs import MARKER, OutputError, claim, create_folder, publish, remove_own, staging


def made(tmp_path, name="out", kind="eval", inputs="a", files=("x.txt", "vis/p.png")):
    tmp = staging(tmp_path / name)
    for f in files:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp / f).write_text(f)
    return publish(tmp, tmp_path / name, kind, inputs)


def test_publish_marks_every_file_and_claim_reads_it_back(tmp_path):
    out = made(tmp_path)
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "eval" and marker["files"] == ["vis/p.png", "x.txt"]
    assert claim(out, "eval", "a") == "same"
    assert claim(out, "eval", "b", force=True) == "replace"
    with pytest.raises(OutputError, match="other inputs"):
        claim(out, "eval", "b")
    with pytest.raises(OutputError, match="evaluation outputs"):
        claim(out, "dataset", "a", force=True)  # another kind is never ours to replace
    assert claim(tmp_path / "new", "eval") == "absent"
    (tmp_path / "empty").mkdir()
    assert claim(tmp_path / "empty", "eval") == "empty"


def test_publish_replaces_its_own_folder_but_never_a_foreign_file(tmp_path):
    made(tmp_path, files=("old.txt",))
    out = made(tmp_path, files=("new.txt",))
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    (out / "user.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"user\.txt"):
        made(tmp_path, files=("newer.txt",))
    assert (out / "user.txt").read_text() == "mine" and (out / "new.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or set-aside folder is left


def test_a_folder_without_a_marker_is_never_replaced(tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "a.txt").write_text("x")
    with pytest.raises(OutputError, match="did not write") as err:
        claim(mine, "eval", force=True)
    assert "\n" not in str(err.value)
    tmp = staging(mine)
    with pytest.raises(OutputError):
        publish(tmp, mine, "eval", force=True)
    assert (mine / "sub" / "a.txt").is_file()


def test_create_folder_is_exclusive_and_takes_a_new_name(tmp_path):
    a = create_folder(tmp_path / "runs" / "r", "run")
    b = create_folder(tmp_path / "runs" / "r", "run")
    assert (a.name, b.name) == ("r", "r-2") and (b / MARKER).is_file()
    with pytest.raises(OutputError, match="already holds a training run"):
        create_folder(tmp_path / "runs" / "r", "run", unique=False)


def test_remove_own_checks_kind_and_contents(tmp_path):
    run = create_folder(tmp_path / "r", "run", patterns=outputs.RUN_FILES)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.pt").write_bytes(b"")
    (run / "eval").mkdir()
    (run / "eval" / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match=r"notes\.md"):
        remove_own(run, "run")
    (run / "eval" / "notes.md").unlink()
    remove_own(run, "run")
    assert not run.exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(OutputError, match="not a training run"):
        remove_own(tmp_path / "plain", "run")


def test_a_dataset_from_before_markers_is_recognised_only_when_it_holds_just_prep_files(tmp_path):
    ds = tmp_path / "ds"
    ds.mkdir()
    for name in ("images.npy", "labels.npy", "valid.npy"):
        (ds / name).write_bytes(b"")
    (ds / "manifest.json").write_text(json.dumps({"input_hash": "f" * 64}))
    assert claim(ds, "dataset", "f" * 64) == "same"
    (ds / "extra.txt").write_text("user")
    with pytest.raises(OutputError):
        claim(ds, "dataset", "f" * 64, force=True)


def test_paths_below_a_file_and_unwritable_places_are_one_line(tmp_path):
    afile = tmp_path / "f"
    afile.write_text("x")
    with pytest.raises(OutputError, match=f"'{afile}' is a file, not a folder"):
        claim(afile / "out", "eval")
    with pytest.raises(OutputError, match="is a file"):
        claim(afile, "eval")
    with pytest.raises(outputs.InputError, match=f"'{afile}' is a file, not a folder"):
        create_folder(afile / "runs" / "r", "run")
    # /sys refuses new folders even to root: a real permission failure, not a simulated one
    with pytest.raises(outputs.InputError, match="not permitted"):
        staging(Path("/sys/ssmseg-test-out"))


def test_io_error_names_the_path_and_the_fix():
    ro = outputs.io_error(OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out"))
    assert (
        str(ro) == "cannot write '/mnt/ro/out': it is on a read-only file system; choose a folder you can write "
        "to, or fix its permissions"
    )
    full = outputs.io_error(OSError(errno.ENOSPC, "No space left on device", "/data/x"))
    assert "no space is left" in str(full) and "free some space" in str(full)
    assert "I/O error" in str(outputs.io_error(OSError("boom")))


def test_staging_on_a_read_only_file_system_leaves_nothing(tmp_path, monkeypatch):
    """Simulated: root can write anywhere here, so mkdir is made to fail as a read-only mount would."""

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(outputs.InputError, match="read-only file system"):
        staging(tmp_path / "out")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_publish_never_replaces_a_folder_written_from_other_inputs_without_force(tmp_path):
    out = tmp_path / "out"
    first = outputs.staging(out)
    (first / "a.txt").write_text("first")
    outputs.publish(first, out, "eval", {"inputs": ["a"]})
    other = outputs.staging(out)
    (other / "a.txt").write_text("second")
    with pytest.raises(outputs.OutputError):
        outputs.publish(other, out, "eval", {"inputs": ["b"]})
    assert (out / "a.txt").read_text() == "first"
    outputs.discard(other)
    again = outputs.staging(out)
    (again / "a.txt").write_text("second")
    outputs.publish(again, out, "eval", {"inputs": ["b"]}, force=True)  # --force: the user's choice
    assert (out / "a.txt").read_text() == "second"


def test_staged_publishes_or_leaves_nothing_and_names_the_output_in_io_faults(tmp_path):
    out = tmp_path / "deep" / "out"
    with outputs.staged(out) as tmp:
        (tmp / "a.txt").write_text("a")
        outputs.publish(tmp, out, "eval", "k")
    assert (out / "a.txt").read_text() == "a"
    with pytest.raises(ValueError, match="boom"), outputs.staged(tmp_path / "new" / "b") as tmp:
        (tmp / "half.npy").write_bytes(b"x")
        raise ValueError("boom")
    assert not (tmp_path / "new").exists()  # the staging folder and the parents made for it are gone
    with pytest.raises(outputs.InputError, match=r"no space is left") as caught, outputs.staged(out) as tmp:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp / "vis" / "p.png"))
    assert str(out / "vis" / "p.png") in str(caught.value) and ".partial" not in str(caught.value)
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"] and (out / "a.txt").read_text() == "a"
