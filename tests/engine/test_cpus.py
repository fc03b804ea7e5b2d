"""runtime.threads: auto reads the affinity mask and the cgroup CPU quota (fake cgroup files here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssmseg.config.schema import RuntimeConfig
from ssmseg.engine import cpus, runtime


def _v2(tmp_path: Path, max_line: str | None, parent_max: str | None = None) -> tuple[Path, Path]:
    root = tmp_path / "cg"
    (root / "user.slice" / "job").mkdir(parents=True)
    if max_line is not None:
        (root / "user.slice" / "job" / "cpu.max").write_text(max_line + "\n")
    if parent_max is not None:
        (root / "user.slice" / "cpu.max").write_text(parent_max + "\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/job\n")
    return root, proc


def test_cgroup_v2_quota_is_read_from_the_own_group_and_its_parents(tmp_path):
    root, proc = _v2(tmp_path, "150000 100000")
    assert cpus.cgroup_quota(root, proc) == pytest.approx(1.5)
    root, proc = _v2(tmp_path / "b", "max 100000", parent_max="50000 100000")  # the tighter parent wins
    assert cpus.cgroup_quota(root, proc) == pytest.approx(0.5)
    root, proc = _v2(tmp_path / "c", "max 100000")
    assert cpus.cgroup_quota(root, proc) is None


def test_cgroup_v1_quota(tmp_path):
    folder = tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc"
    folder.mkdir(parents=True)
    (folder / "cpu.cfs_quota_us").write_text("300000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert cpus.cgroup_quota(tmp_path / "cg", proc) == pytest.approx(3.0)
    (folder / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert cpus.cgroup_quota(tmp_path / "cg", proc) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cpus.cgroup_quota(tmp_path / "nothing", tmp_path / "missing") is None


def test_auto_takes_the_tightest_limit_and_never_zero():
    b = cpus.usable_cpus(affinity=8, quota=2.5, logical=16, torch_default=8)
    assert b.threads == 2 and "cgroup quota 2.5 CPUs" in b.why and "affinity 8" in b.why
    assert cpus.usable_cpus(affinity=3, quota=None, logical=16, torch_default=8).threads == 3
    assert cpus.usable_cpus(affinity=16, quota=0.5, logical=16, torch_default=8).threads == 1
    assert cpus.usable_cpus(affinity=16, quota=None, logical=16, torch_default=8).threads == 8


def test_auto_reads_affinity_and_quota(monkeypatch, tmp_path):
    root, proc = _v2(tmp_path, "200000 100000")
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    monkeypatch.setattr(cpus, "PROC_CGROUP", proc)
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    b = cpus.usable_cpus(logical=64, torch_default=32)
    assert (b.threads, b.affinity, b.quota) == (2, 3, 2.0)


def test_setup_runtime_sets_what_auto_chose(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "_by_load", {})
    monkeypatch.setattr(runtime, "free_of_load", lambda n: (n, ""))  # an idle machine
    monkeypatch.setattr(runtime, "usable_cpus", lambda: cpus.CpuBudget(1, "affinity 1", 4, 1, None))
    try:
        rt = runtime.setup_runtime(RuntimeConfig(device="cpu"))
        assert (rt.threads, torch.get_num_threads()) == (1, 1) and "affinity 1" in rt.threads_why
        assert runtime.choose_threads(3) == (3, "runtime.threads")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: the usable cores are shared
        monkeypatch.setattr(runtime, "usable_cpus", lambda: cpus.CpuBudget(4, "x", 4, 4, None))
        assert runtime.choose_threads("auto", 2)[0] == 2
    finally:
        torch.set_num_threads(before)


def test_auto_leaves_the_cores_other_work_holds(monkeypatch):
    assert cpus.free_of_load(2, load=0.3) == (2, "")
    assert cpus.free_of_load(2, load=11.0)[0] == 1 and "load average 11.0" in cpus.free_of_load(2, load=11.0)[1]
    assert cpus.free_of_load(16, load=4.2)[0] == 12
    monkeypatch.setattr(runtime, "_by_load", {})
    monkeypatch.setattr(runtime, "usable_cpus", lambda: cpus.CpuBudget(2, "affinity 2", 2, 2, None))
    monkeypatch.setattr(cpus.os, "getloadavg", lambda: (6.0, 5.0, 4.0))
    threads, why = runtime.choose_threads("auto")
    assert threads == 1 and "load average 6.0" in why and "runtime.threads=2" in why
    monkeypatch.setattr(cpus.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert runtime.choose_threads("auto")[0] == 1  # decided once per process: cv's next fold sees its own load
    assert runtime.choose_threads("auto", steady=True)[0] == 2  # runtime.deterministic: the same count always


def test_busy_machine_line(monkeypatch):
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 2)
    line = cpus.load_warning(2, load=3.0)
    assert line is not None and "runtime.threads=1" in line and "3.0" in line
    assert cpus.load_warning(2, load=0.2) is None
    assert cpus.load_warning(1, load=9.0) is None  # one thread: nothing better to advise


def test_threads_config_accepts_auto_numbers_and_empty():
    assert RuntimeConfig().threads == "auto"
    assert RuntimeConfig(threads=2).threads == 2 and RuntimeConfig(threads=None).threads is None
    with pytest.raises(ValueError):
        RuntimeConfig(threads=0)
