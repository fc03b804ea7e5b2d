"""Facts about the machine that decide how ssmseg runs (``ssmseg doctor``)."""

from __future__ import annotations

import platform
import sys

import torch

from ssmseg import __version__
from ssmseg.engine.cpus import free_of_load, usable_cpus
from ssmseg.ssm.scan import backend_report, mamba_ssm_kernel


def collect() -> list[tuple[str, str]]:
    """(item, value) rows, in display order."""
    rows = [
        ("ssmseg", __version__),
        ("python", f"{sys.version.split()[0]} ({platform.platform()})"),
        ("torch", torch.__version__),
        ("cuda (torch build)", str(torch.version.cuda or "none (CPU build)")),
        ("cuda available", str(torch.cuda.is_available())),
    ]
    for i in range(torch.cuda.device_count()):
        rows.append((f"cuda:{i}", torch.cuda.get_device_name(i)))
    fn, why = mamba_ssm_kernel()
    rows.append(("mamba-ssm kernels", "importable" if fn else why))
    for device, backend, reason in backend_report():
        rows.append((f"scan backend on {device}", f"{backend}: {reason}"))
    try:
        import rasterio

        rows.append(("rasterio / GDAL", f"{rasterio.__version__} / {rasterio.__gdal_version__}"))
    except ImportError as exc:
        rows.append(("rasterio / GDAL", f"not importable ({exc})"))
    budget = usable_cpus()
    free, busy = free_of_load(budget.threads)
    rows.append(
        (
            "cpu threads",
            f"runtime.threads auto chooses {free} now ({budget.why}"
            + (f"; {busy})" if busy else "; the machine is not busy)"),
        )
    )
    return rows
