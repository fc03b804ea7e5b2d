"""Device, threads, seeds, determinism and torchrun/DDP: set up once per command."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ssmseg.config.schema import RuntimeConfig
from ssmseg.engine.cpus import free_of_load, load_warning, usable_cpus
from ssmseg.errors import BackendUnavailableError
from ssmseg.ssm import set_default_backend


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    threads: int = 1  # torch's intra-op threads as set
    threads_why: str = ""  # how they were chosen (run header, history.json)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"runtime.device is {name} but CUDA is not available here (torch {torch.__version__}); use --device cpu"
        )
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


_by_load: dict[int, tuple[int, str]] = {}  # auto's load-based choice, made once per process


def choose_threads(threads: int | str | None, world_size: int = 1, steady: bool = False) -> tuple[int, str]:
    """The thread count for ``runtime.threads`` and a few words on why: a number as given; None: torch's
    default; auto: the usable cores (affinity, cgroup quota, physical cores) shared among this machine's
    processes (torchrun), less what other work holds now (the load average; once per process, so cv's later
    folds do not see this run's own load). ``steady`` (runtime.deterministic) leaves the load out: the same
    count on every run of this machine."""
    if isinstance(threads, int):
        return threads, "runtime.threads"
    if threads is None:
        return torch.get_num_threads(), "torch's default (runtime.threads empty)"
    budget = usable_cpus()
    n, why = budget.threads, budget.why
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)) or world_size)
    if local > 1:
        n, why = max(1, n // local), f"{n} usable / {local} processes ({why})"
    if steady:
        return n, f"auto: {why}; runtime.deterministic: the load is not considered"
    if n not in _by_load:
        _by_load[n] = free_of_load(n)
    free, busy = _by_load[n]
    if busy:
        return free, f"auto: {why}; {busy} (set runtime.threads={n} to use them anyway)"
    return n, f"auto: {why}"


def explicit_threads(cfg: RuntimeConfig) -> int | None:
    """``runtime.threads`` when the user gave a number, else None (for libraries with their own default)."""
    return cfg.threads if isinstance(cfg.threads, int) else None


def setup_runtime(cfg: RuntimeConfig) -> Runtime:
    """Threads, scan backend, determinism, process group (under torchrun) and the device; ``announce_threads``
    prints the choice when the work starts."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    threads, why = choose_threads(cfg.threads, world, steady=cfg.deterministic)
    torch.set_num_threads(threads)
    set_default_backend(cfg.scan_backend)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # A bounded timeout: a peer that dies makes the others fail instead of waiting for the default 30 min.
        dist.init_process_group(backend, timeout=timedelta(minutes=5))
    seed_everything(cfg.seed)
    return Runtime(device, rank, world, threads, why)


_announced: list[tuple[int, str]] = []


def announce_threads(rt: Runtime) -> None:
    """The run header's thread line (and the busy-machine hint), on the CPU, once per process and choice (cv's
    folds set up the same runtime again)."""
    from ssmseg.progress import info, warn

    threads, why = rt.threads, rt.threads_why
    if rt.device.type != "cpu" or (threads, why) in _announced:
        return
    _announced.append((threads, why))
    info(f"threads: {threads} ({why})")
    busy = load_warning(threads)
    if busy:
        warn(busy)


def all_reduce_(tensor: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Sum a tensor over ranks in place (a no-op in a single process)."""
    if rt.distributed:
        dist.all_reduce(tensor)
    return tensor


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        dist.barrier()


def shutdown(rt: Runtime) -> None:
    """Leave together: a rank that tears its group down while a peer is still writing can strand it."""
    if rt.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
