"""``selective_scan``: mamba-ssm's ``selective_scan_fn`` contract, on every device.

Backends: ``cuda`` (mamba-ssm's kernel), ``cpu`` (our fused compiled kernel), ``torch`` (chunked pure
PyTorch, any device) and ``reference`` (the sequential loop). ``auto`` chooses per call from the tensors'
device and what imports, never once at import time: the same model trains on a GPU with mamba-ssm and
evaluates on a laptop without it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch

from ssmseg.errors import BackendUnavailableError, ConfigError
from ssmseg.ssm.chunked import selective_scan_torch
from ssmseg.ssm.cpu_kernel import load_kernel, selective_scan_cpu
from ssmseg.ssm.inputs import check_inputs
from ssmseg.ssm.reference import selective_scan_reference
from ssmseg.ssm.traced import selective_scan_traced

BACKENDS = ("auto", "cuda", "cpu", "torch", "reference")
_default = {"backend": "auto", "warned": False}


def set_default_backend(name: str) -> None:
    """Force a backend for every later call (``runtime.scan_backend``); ``auto`` restores the choice."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown scan backend '{name}'; choose one of {', '.join(BACKENDS)}")
    _default["backend"] = name


@lru_cache(maxsize=1)
def mamba_ssm_kernel() -> tuple[Callable[..., Any] | None, str]:
    """mamba-ssm's ``selective_scan_fn`` if its CUDA extension imports, with the reason if not."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # ImportError, or an OSError/RuntimeError from a broken CUDA build
        return None, f"mamba-ssm not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return selective_scan_fn, "mamba-ssm's CUDA kernel"


def choose_backend(device: torch.device, requested: str | None = None) -> tuple[str, str]:
    """(backend, why) for tensors on ``device``; a forced backend that cannot run raises one clear error."""
    requested = requested or _default["backend"]
    on_cuda = device.type == "cuda"
    if requested == "auto":
        if on_cuda:
            fn, why = mamba_ssm_kernel()
            return ("cuda", why) if fn else ("torch", f"{why}; pure-PyTorch chunked scan on {device}")
        if device.type == "cpu":
            lib, why = load_kernel()
            return ("cpu", why) if lib else ("torch", f"fused kernel unavailable: {why}")
        return "torch", f"pure-PyTorch chunked scan on {device}"
    if requested == "cuda":
        fn, why = mamba_ssm_kernel()
        if fn is None:
            raise BackendUnavailableError(
                f"scan backend 'cuda' cannot run: {why}; install it on a CUDA machine with "
                "pip install 'ssmseg[cuda]', or set runtime.scan_backend=auto"
            )
        if not on_cuda:
            raise BackendUnavailableError(
                f"scan backend 'cuda' needs CUDA tensors, got {device}; set runtime.device=cuda or scan_backend=auto"
            )
        return "cuda", why
    if requested == "cpu":
        if device.type != "cpu":
            raise BackendUnavailableError(
                f"scan backend 'cpu' needs CPU tensors, got {device}; set runtime.scan_backend=auto"
            )
        lib, why = load_kernel()
        if lib is None:
            raise BackendUnavailableError(
                f"scan backend 'cpu' cannot run: {why}; install a C compiler (gcc) or set runtime.scan_backend=torch"
            )
        return "cpu", why
    if requested in ("torch", "reference"):
        return requested, "forced by runtime.scan_backend"
    raise ConfigError(f"unknown scan backend '{requested}'; choose one of {', '.join(BACKENDS)}")


_IMPLS: dict[str, Callable[..., Any]] = {
    "cpu": selective_scan_cpu,
    "torch": selective_scan_torch,
    "reference": selective_scan_reference,
}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with mamba-ssm's ``selective_scan_fn`` shapes and meaning.

    u, delta, z: (batch, dim, L); A: (dim, N), real; B, C: (dim, N), (batch, N, L) or
    (batch, groups, N, L); D, delta_bias: (dim,). Returns y (batch, dim, L) in u's dtype, and with
    ``return_last_state`` also the final state (batch, dim, N) in float32 (not differentiable on ``cpu``
    and ``cuda``, as in mamba-ssm). The state is accumulated in float32 for every input dtype.
    """
    check_inputs(u, delta, A, B, C)
    if torch.jit.is_tracing():  # an export: loops that keep the length dynamic (the kernels cannot be traced)
        return selective_scan_traced(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    name, why = choose_backend(u.device, backend)
    auto = (backend or _default["backend"]) == "auto"
    if auto and name == "torch" and u.device.type == "cpu" and not _default["warned"]:
        _default["warned"] = True
        from ssmseg.progress import warn

        warn(f"using the slower pure-PyTorch scan ({why})")
    if name == "cuda":
        fn, _ = mamba_ssm_kernel()
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    return _IMPLS[name](u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def backend_report() -> list[tuple[str, str, str]]:
    """(device, backend, why) for the CPU and each visible CUDA device, under the current default."""
    devices = [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    rows = []
    for dev in devices:
        try:
            name, why = choose_backend(dev)
        except (BackendUnavailableError, ConfigError) as exc:
            name, why = "unavailable", str(exc)
        rows.append((str(dev), name, why))
    return rows
