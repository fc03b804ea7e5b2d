"""The ``runtime`` section: device, precision, threads, outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ssmseg.config.sections.base import Section


class RuntimeConfig(Section):
    """Device, precision, seeds and where outputs go."""

    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N.")
    precision: Literal["fp32", "bf16", "fp16", "auto"] = Field(
        "fp32",
        description="Autocast dtype; auto: bf16 (or fp16 with a grad scaler) on CUDA, fp32 on the CPU. "
        "The scan state always stays float32.",
    )
    seed: int = Field(0, ge=0, description="Seed of every random generator.")
    deterministic: bool = Field(False, description="Use deterministic algorithms (exact resume on CPU).")
    scan_backend: Literal["auto", "cuda", "cpu", "torch", "reference"] = Field(
        "auto",
        description="Selective-scan backend; auto picks per call from the tensors' device and what imports.",
    )
    threads: Literal["auto"] | int | None = Field(
        "auto",
        description="CPU threads for torch and the scan. auto: what this process may really use (its affinity mask "
        "and cgroup CPU quota, at most the physical cores) less what other work holds (the load average at the "
        "start; runtime.deterministic leaves the load out); a number: exactly that; empty: torch's default. The run "
        "header and `ssmseg doctor` say what was chosen and why.",
    )
    out_dir: Path = Field(Path("runs"), description="Folder that holds run folders.")
    name: str | None = Field(None, description="Run folder name; empty: the model name and a timestamp.")

    @field_validator("threads")
    @classmethod
    def _threads_positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1, or auto")
        return v
