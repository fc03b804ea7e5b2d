"""Shape checks and small pieces shared by the scan backends."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssmseg.errors import ConfigError


def check_inputs(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
    """Raise a clear error when shapes do not follow ``selective_scan_fn``'s contract."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must both be (batch, dim, length); got {tuple(u.shape)}, {tuple(delta.shape)}")
    dim = u.shape[1]
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, state); got {tuple(A.shape)}")
    if A.is_complex():
        raise ConfigError("complex A is not supported by ssmseg's scan; use a real A_log parameterisation")
    for name, M in (("B", B), ("C", C)):
        if M.dim() == 2:
            ok = M.shape == A.shape
        elif M.dim() in (3, 4):
            groups = M.shape[1] if M.dim() == 4 else 1
            ok = (
                M.shape[0] == u.shape[0]
                and M.shape[-2] == A.shape[1]
                and M.shape[-1] == u.shape[2]
                and dim % groups == 0
            )
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"{name} must be (dim, state), (batch, state, length) or (batch, groups, state, length) with "
                f"groups dividing dim; got {tuple(M.shape)} for u {tuple(u.shape)} and A {tuple(A.shape)}"
            )


def expand_bc(M: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C as (batch|1, dim, N, L|1): each channel gets its group's matrix."""
    if M.dim() == 2:
        return M[None, :, :, None]
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M.repeat_interleave(dim // M.shape[1], dim=1)


def finish_output(
    y: torch.Tensor, u: torch.Tensor, D: torch.Tensor | None, z: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """y + D u, gated by silu(z), in the input dtype (all float32 math)."""
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)
