"""How many CPU threads this process may really use: its affinity mask and its cgroup CPU quota (v2 or v1),
never more than torch's own default (the physical cores), less what other work holds (the load average);
and whether the machine is busier than a thread count the user chose.

``runtime.threads: auto`` takes ``usable_cpus()`` and then ``free_of_load``. Shared servers, CI runners and
containers are where a thread count taken from the core count oversubscribes: with two threads on two cores
that other work holds, a step waits for the slowest thread every time (measured 5-30x slower than one).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

# torch's own default (physical cores, or OMP_NUM_THREADS), read before ssmseg sets a thread count.
TORCH_DEFAULT = torch.get_num_threads()
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CpuBudget:
    """``threads``: what ``auto`` chooses; ``why``: the limits that decided it, for doctor and the run header."""

    threads: int
    why: str
    logical: int
    affinity: int | None
    quota: float | None  # CPUs allowed by the cgroup quota; None: no quota found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroups(proc_cgroup: Path) -> dict[str, str]:
    """Controller -> this process's cgroup path ("" for cgroup v2's unified hierarchy)."""
    out: dict[str, str] = {}
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                out[controller] = parts[2]
    return out


def _ancestors(root: Path, rel: str) -> list[Path]:
    """``root/rel`` and each folder above it up to ``root`` (a quota on any of them applies)."""
    here = root / rel.lstrip("/")
    out = [here, *here.parents]
    return [p for p in out if p == root or root in p.parents]


def cgroup_quota(root: Path | None = None, proc_cgroup: Path | None = None) -> float | None:
    """CPUs allowed by the tightest cgroup CPU quota on this process's cgroup or its parents (v2 ``cpu.max``;
    v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), or None when there is none."""
    root = CGROUP_ROOT if root is None else Path(root)
    groups = _own_cgroups(PROC_CGROUP if proc_cgroup is None else Path(proc_cgroup))
    found: list[float] = []
    if "" in groups:  # v2
        for folder in _ancestors(root, groups[""]):
            text = _read(folder / "cpu.max")
            if text:
                quota, _, period = text.partition(" ")
                if quota != "max" and period:
                    found.append(int(quota) / int(period))
    for controller in ("cpu", "cpuacct"):  # v1: mounted as cpu, cpu,cpuacct or cpuacct,cpu
        if controller not in groups:
            continue
        for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            for folder in _ancestors(root / mount, groups[controller]):
                quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                if quota and period and int(quota) > 0 and int(period) > 0:
                    found.append(int(quota) / int(period))
        break
    return min(found) if found else None


def affinity_cpus() -> int | None:
    """Cores this process may be scheduled on (its affinity mask), or None where the OS does not say."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def usable_cpus(
    affinity: int | None = None,
    quota: float | None = None,
    logical: int | None = None,
    torch_default: int | None = None,
) -> CpuBudget:
    """What ``runtime.threads: auto`` chooses: the smallest of the affinity mask, the cgroup quota (rounded down,
    at least 1) and torch's default (its count of physical cores). Arguments left out are read from here."""
    logical = logical or os.cpu_count() or 1
    affinity = affinity_cpus() if affinity is None else affinity
    quota = cgroup_quota() if quota is None else quota
    torch_default = TORCH_DEFAULT if torch_default is None else torch_default
    limits = {f"{logical} logical cores": logical}
    if affinity is not None:
        limits[f"affinity {affinity}"] = affinity
    if quota is not None:
        limits[f"cgroup quota {quota:g} CPUs"] = max(1, math.floor(quota + 1e-9))
    limits[f"torch default {torch_default}"] = torch_default
    threads = max(1, min(limits.values()))
    why = ", ".join(limits) + ("" if quota is not None else ", no cgroup quota")
    return CpuBudget(threads, why, logical, affinity, quota)


def free_of_load(usable: int, load: float | None = None) -> tuple[int, str]:
    """``usable`` less what other work holds now (the 1-minute load average, rounded), at least 1, and a few
    words when that is fewer (else ""). Threads that wait for cores others hold make every step wait for the
    slowest: on 2 loaded cores 2 threads were measured 5-30x slower than 1, while 1 thread on 2 free cores
    costs at most 2x, so a busy machine gets fewer threads."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return usable, ""
    free = max(1, min(usable, round(usable - load)))
    if free >= usable:
        return usable, ""
    return free, f"load average {load:.1f}: about {max(0.0, usable - load):.1f} of {usable} free"


def load_warning(threads: int, load: float | None = None) -> str | None:
    """One line when the 1-minute load average says other work already holds the cores ``threads`` threads
    would run on (so each step waits for descheduled threads), else None."""
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            return None
    cores = affinity_cpus() or os.cpu_count() or 1
    if threads < 2 or load + threads < cores + 1:
        return None
    return (
        f"the machine is busy (load average {load:.1f} on {cores} cores): {threads} threads would wait for cores "
        "other work holds; if steps are slow, use --set runtime.threads=1"
    )
