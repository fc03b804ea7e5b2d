"""SIGTERM is handled like Ctrl-C: a real training process, terminated, keeps its checkpoints, says
`interrupted` in history.json, exits 143 with the resume command, and the run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import REPO


def _history(run):
    try:
        return json.loads((run / "history.json").read_text())
    except (OSError, ValueError):
        return None


def test_sigterm_keeps_the_run_and_says_how_to_resume(synthetic_dataset, tmp_path):
    sets = {
        "data.dataset": synthetic_dataset,
        "data.crop_size": 16,
        "data.batch_size": 4,
        "data.max_patches": 16,
        "model.name": "unet",
        "model.width": 8,
        "model.depth": 2,
        "train.epochs": 200,
        "runtime.threads": 1,
        "runtime.name": "term",
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ssmseg", "train", *args, "--device", "cpu", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run = tmp_path / "term"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        history = _history(run)
        if history and len(history["epochs"]) >= 1 and (run / "checkpoints" / "latest.pt").is_file():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err[-2000:]
    assert "terminated (SIGTERM)" in err and f"ssmseg train --resume {run}" in err, err[-2000:]
    assert "Traceback" not in err
    history = _history(run)
    assert history["stop_reason"] == "interrupted"
    done = len(history["epochs"])
    assert 1 <= done < 200 and (run / "checkpoints" / "latest.pt").is_file()
    # it resumes like any run (here: told, with --force, to stop one epoch later)
    resume = ["--resume", str(run), "--force", "--set", f"train.epochs={done + 1}"]
    again = subprocess.run(
        [sys.executable, "-m", "ssmseg", "train", *resume], capture_output=True, text=True, env=env, timeout=240
    )
    assert again.returncode == 0, again.stderr[-2000:]
    after = _history(run)
    assert len(after["epochs"]) == done + 1 and after["stop_reason"] == "completed"
