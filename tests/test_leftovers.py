"""Leftovers of a killed command: staging folders and reserved output folders are removed by the next command
that writes the same output only when their owner provably ended on this host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ssmseg import outputs
from tests.conftest import REPO


def _killed(code: str, cwd: Path) -> None:
    """Run ``code`` in a real process that SIGKILLs itself when it is done (nothing of ours runs after it)."""
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{kill}"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_staging_left_by_a_killed_process_is_removed_by_the_next(tmp_path):
    dest = tmp_path / "ds"
    _killed(
        f"from ssmseg import outputs; t = outputs.staging({str(dest)!r}); (t / 'big.npy').write_bytes(b'x' * 1000)",
        tmp_path,
    )
    left = list(tmp_path.glob(".ds.partial-*"))
    assert len(left) == 1 and (left[0] / "big.npy").is_file()
    mine = outputs.staging(dest)
    assert not left[0].exists() and mine.is_dir()
    outputs.publish(mine, dest, "dataset")
    assert dest.is_dir() and list(tmp_path.glob(".ds.partial-*")) == []


def test_staging_without_proof_is_never_removed(tmp_path):
    dest = tmp_path / "ds"
    host = outputs._host_tag()
    live = outputs.staging(dest)  # this process: alive
    other_host = tmp_path / f".ds.partial-p1234567s5h{'0' * 10}-abc"  # another host's (hash differs)
    unmarked = tmp_path / ".ds.partial-abc123"  # an older ssmseg's, or someone else's: no owner
    other_dest = tmp_path / f".other.partial-p{_dead_pid()}sxh{host}-abc"  # a dead owner, but another output
    for folder in (other_host, unmarked, other_dest):
        folder.mkdir()
    dead = tmp_path / f".ds.partial-p{_dead_pid()}sxh{host}-abc"
    dead.mkdir()
    outputs.staging(dest)
    assert not dead.exists()
    assert live.is_dir() and other_host.is_dir() and unmarked.is_dir() and other_dest.is_dir()


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path):
    me = outputs.owner()
    assert not outputs.owner_ended(me)
    assert outputs.owner_ended({**me, "start": str(int(me["start"]) - 1)})  # same pid, started at another time
    assert not outputs.owner_ended({**me, "pid": _dead_pid(), "host": "elsewhere"})


def test_an_output_folder_reserved_by_a_killed_process_is_taken_back(tmp_path):
    # an interrupted sweep leaves RUN/sweep holding only its marker: the next one must not become sweep-2
    _killed(f"from ssmseg import outputs; outputs.create_folder({str(tmp_path / 'sweep')!r}, 'sweep', 'k')", tmp_path)
    assert json.loads((tmp_path / "sweep" / outputs.MARKER).read_text())["owner"]["pid"] > 0
    again = outputs.create_folder(tmp_path / "sweep", "sweep", "k")
    assert again == tmp_path / "sweep"
    # a live owner's, another kind's, or one holding files is never taken
    assert outputs.create_folder(tmp_path / "sweep", "sweep", "k") == tmp_path / "sweep-2"
    (tmp_path / "run").mkdir()
    outputs.write_marker(tmp_path / "run", "run")
    _rewrite_owner(tmp_path / "run", _dead_pid())
    assert outputs.create_folder(tmp_path / "run", "sweep", "k") == tmp_path / "run-2"
    (tmp_path / "full").mkdir()
    outputs.write_marker(tmp_path / "full", "sweep")
    _rewrite_owner(tmp_path / "full", _dead_pid())
    (tmp_path / "full" / "sweep.json").write_text("{}")
    assert outputs.create_folder(tmp_path / "full", "sweep", "k") == tmp_path / "full-2"
    assert (tmp_path / "full" / "sweep.json").is_file()


def _rewrite_owner(folder: Path, pid: int) -> None:
    marker = json.loads((folder / outputs.MARKER).read_text())
    marker["owner"] = {**marker["owner"], "pid": pid, "start": None}
    (folder / outputs.MARKER).write_text(json.dumps(marker))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    time.sleep(0.05)
    return proc.pid


def test_a_replaced_output_set_aside_by_a_killed_process_is_removed_by_the_next(tmp_path):
    dest = tmp_path / "ds"
    # publish replaces ds: the old one goes to .ds.old-*, and the process dies before removing it
    _killed(
        f"""from ssmseg import outputs
import shutil
for name in ("a", "b"):
    t = outputs.staging({str(dest)!r}); (t / "x.npy").write_bytes(name.encode())
    outputs.publish(t, {str(dest)!r}, "dataset", force=True)
    shutil.rmtree = lambda *a, **k: None  # the kill comes before the set-aside copy is removed""",
        tmp_path,
    )
    left = list(tmp_path.glob(".ds.old-*"))
    assert len(left) == 1 and (left[0] / "ds" / "x.npy").read_bytes() == b"a" and (dest / "x.npy").read_bytes() == b"b"
    outputs.discard(outputs.staging(dest))
    assert list(tmp_path.glob(".ds.old-*")) == [] and (dest / "x.npy").read_bytes() == b"b"


def test_a_set_aside_output_whose_replacement_never_came_is_put_back(tmp_path):
    host, dest = outputs._host_tag(), tmp_path / "ds"
    aside = tmp_path / f".ds.old-p{_dead_pid()}sxh{host}-abc"
    (aside / "ds").mkdir(parents=True)
    (aside / "ds" / "x.npy").write_bytes(b"a")
    outputs.discard(outputs.staging(dest))
    assert (dest / "x.npy").read_bytes() == b"a" and not aside.exists()


def test_a_set_aside_output_without_proof_is_never_removed(tmp_path):
    host, dest = outputs._host_tag(), tmp_path / "ds"
    me = outputs.owner()
    live = tmp_path / f".ds.old-p{me['pid']}s{me['start']}h{host}-abc"
    other_host = tmp_path / f".ds.old-p{_dead_pid()}sxh{'0' * 10}-abc"
    unmarked = tmp_path / ".ds.old-abc123"  # an older ssmseg's (mkdtemp name): no owner
    for folder in (live, other_host, unmarked):
        (folder / "ds").mkdir(parents=True)
    outputs.discard(outputs.staging(dest))
    assert all((f / "ds").is_dir() for f in (live, other_host, unmarked)) and not dest.exists()
