"""Mixed precision: autocast for bf16/fp16 and a gradient scaler for fp16 on CUDA. The selective scan
keeps its state in float32 whatever the autocast dtype."""

from __future__ import annotations

import contextlib

import torch

from ssmseg.errors import ConfigError


def resolve(device: torch.device, precision: str) -> str:
    """``auto``: bf16 where the GPU supports it, else fp16, on CUDA; fp32 on the CPU."""
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    precision = resolve(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("runtime.precision fp16 needs CUDA; use bf16 or fp32 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def make_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    return torch.amp.GradScaler("cuda", enabled=resolve(device, precision) == "fp16" and device.type == "cuda")
