"""The plain sequential selective scan: the ground truth every faster backend is tested against.

Semantics are those of mamba-ssm's ``selective_scan_ref`` (real ``A`` only). The time axis is unbound
once: indexing ``x[:, :, t]`` inside the loop makes the backward quadratic in the length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssmseg.ssm.inputs import expand_bc, finish_output


def selective_scan_reference(
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
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """u, delta, z: (batch, dim, L); A: (dim, N); B, C: (dim, N), (batch, N, L) or (batch, G, N, L);
    D, delta_bias: (dim,). Returns y (batch, dim, L) in u's dtype [and the last state (batch, dim, N)]."""
    dtype_in = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, _ = u.shape
    A = A.float()
    Bx, Cx = expand_bc(B, dim).float(), expand_bc(C, dim).float()  # (batch|1, dim, N, L|1)
    decay = torch.exp(delta.unsqueeze(-1) * A[None, :, None, :])  # (batch, dim, L, N)
    drive = (delta * u).unsqueeze(-1) * Bx.transpose(-1, -2)  # (batch, dim, L, N)
    Ct = Cx.transpose(-1, -2).expand(batch, dim, u.shape[-1], A.shape[1])
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for a_t, b_t, c_t in zip(decay.unbind(2), drive.unbind(2), Ct.unbind(2), strict=True):
        x = a_t * x + b_t
        ys.append((x * c_t).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(u.shape)
    out = finish_output(y, u, D, z, dtype_in)
    return (out, x) if return_last_state else out
